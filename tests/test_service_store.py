"""`sessionmem service install` records the store choice (design §12): the installing
shell's store variables in the 0600 env file, never in a unit, a plist's arguments or
argv; a drop-in that lets a PostgreSQL store's daemon reach the network; the project's
sessionmem.toml read by the service's daemon itself. Real files checked by systemd, a
real socket-activated daemon on a real PostgreSQL server."""

from __future__ import annotations

import plistlib
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sessionmem import Session
from sessionmem.paths import project_key
from sessionmem.service import STORE_DROPIN, render_plist, store_env

from conftest import DAEMON, run_cli, wait_for
from test_service import printed_files

SECRET = "s3cret-pw"
URL = f"postgresql://agents:{SECRET}@db.internal/sm"
pytestmark = pytest.mark.skipif(sys.platform == "darwin", reason="the systemd layout")


def project(tmp_path: Path, env: dict[str, str]) -> tuple[Path, dict[str, str], Path]:
    root = tmp_path / "proj"
    root.mkdir()
    config = tmp_path / "config"
    return root.resolve(), dict(env, XDG_CONFIG_HOME=str(config), HOME=str(tmp_path / "home")), config


def layout(config: Path, root: Path) -> tuple[Path, Path, Path]:
    key = project_key(root)
    unit_dir = config / "systemd" / "user"
    return unit_dir, config / "sessionmem" / f"{key}.env", unit_dir / f"sessionmem@{key}.service.d" / "store.conf"


def test_the_shells_store_goes_into_the_private_env_file_only(tmp_path: Path, env: dict[str, str]) -> None:
    root, e, config = project(tmp_path, env)
    e.update(SESSIONMEM_STORE=URL, SESSIONMEM_PROJECT_KEY="example.com/me/proj", PGPASSWORD=SECRET)
    unit_dir, env_file, dropin = layout(config, root)
    printed = run_cli(["--project", str(root), "service", "install", "--print"], e)
    assert printed.returncode == 0, printed.stderr
    assert SECRET not in printed.stdout + printed.stderr
    shown = printed_files(printed.stdout)
    assert shown[str(env_file)] == (f"SESSIONMEM_PROJECT={root}\nSESSIONMEM_STORE=postgresql://agents:***@db.internal/sm\n"
                                    f"SESSIONMEM_PROJECT_KEY=example.com/me/proj\nPGPASSWORD=***\n")
    assert shown[str(dropin)] == STORE_DROPIN
    r = run_cli(["--project", str(root), "service", "install", "--no-start"], e)
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout + r.stderr
    assert "recorded SESSIONMEM_STORE, SESSIONMEM_PROJECT_KEY, PGPASSWORD (mode 0600)" in r.stdout
    assert env_file.read_text() == (f"SESSIONMEM_PROJECT={root}\nSESSIONMEM_STORE={URL}\n"
                                    f"SESSIONMEM_PROJECT_KEY=example.com/me/proj\nPGPASSWORD={SECRET}\n")
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(env_file.parent.stat().st_mode) == 0o700
    # every other file is what --print showed, and none holds the secret
    for path, text in shown.items():
        if path != str(env_file):
            assert Path(path).read_text() == text and SECRET not in text
    assert dropin.read_text() == STORE_DROPIN
    # uninstall takes the env file and the drop-in (its folder too)
    r = run_cli(["--project", str(root), "service", "uninstall"], e)  # no user manager here: exit 1, files gone
    assert not env_file.exists() and not dropin.exists() and not dropin.parent.exists()
    assert (unit_dir / "sessionmem@.service").exists()  # the template serves other projects


def test_a_toml_store_is_left_to_the_daemon_and_a_sqlite_one_has_no_dropin(tmp_path: Path,
                                                                         env: dict[str, str]) -> None:
    root, e, config = project(tmp_path, env)
    _, env_file, dropin = layout(config, root)
    (root / "sessionmem.toml").write_text('[store]\nurl = "postgresql://agents@db.internal/sm"\n'
                                          'project_key = "example.com/me/proj"\n')
    e["PGPASSWORD"] = SECRET  # a PostgreSQL store's password from the shell goes with it
    assert run_cli(["--project", str(root), "service", "install", "--no-start"], e).returncode == 0
    assert env_file.read_text() == f"SESSIONMEM_PROJECT={root}\nPGPASSWORD={SECRET}\n"  # the toml: read by the daemon
    assert dropin.read_text() == STORE_DROPIN
    # the project moves to SQLite: a new install takes the drop-in away, and a SQLite
    # store's install records no PostgreSQL password
    (root / "sessionmem.toml").unlink()
    r = run_cli(["--project", str(root), "service", "install", "--no-start"], e)
    assert r.returncode == 0 and f"removed {dropin}" in r.stdout, r.stderr
    assert not dropin.exists() and env_file.read_text() == f"SESSIONMEM_PROJECT={root}\n"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    # whatever the umask of the shell that installs
    env_file.unlink()
    r = subprocess.run(["sh", "-c", 'umask 000; exec "$@"', "sh", *DAEMON[:1], "-m", "sessionmem", "--project",
                        str(root), "service", "install", "--no-start"], env=dict(e, SESSIONMEM_STORE="sqlite"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert env_file.read_text() == f"SESSIONMEM_PROJECT={root}\nSESSIONMEM_STORE=sqlite\n"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


def test_what_cannot_be_recorded_or_started_is_refused_and_nothing_written(tmp_path: Path,
                                                                          env: dict[str, str]) -> None:
    root, e, config = project(tmp_path, env)
    unit_dir, env_file, _ = layout(config, root)
    for extra, said in (({"SESSIONMEM_STORE": URL, "SESSIONMEM_PROJECT_KEY": "k", "PGPASSWORD": 'pa$s"word'},
                         "$PGPASSWORD holds characters"),
                        ({"SESSIONMEM_STORE": "postgresql://db.internal/sm"}, "needs a project key"),
                        ({"SESSIONMEM_STORE": "mysql://db.internal/sm"}, "unknown store")):
        for args in (["service", "install", "--no-start"], ["service", "install", "--print"]):
            r = run_cli(["--project", str(root), *args], dict(e, **extra))
            assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert said in r.stderr and 'pa$s"word' not in r.stderr and r.stdout == ""
            assert not unit_dir.exists() and not env_file.exists()


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze (Debian package systemd)")
def test_systemd_reads_the_dropin_with_the_units(tmp_path: Path, env: dict[str, str]) -> None:
    root, e, config = project(tmp_path, env)
    e.update(SESSIONMEM_STORE=URL, SESSIONMEM_PROJECT_KEY="k")
    assert run_cli(["--project", str(root), "service", "install", "--no-start"], e).returncode == 0
    unit_dir, _, dropin = layout(config, root)
    key = project_key(root)
    check = tmp_path / "check"
    (check / dropin.parent.name).mkdir(parents=True)
    shutil.copy(unit_dir / "sessionmem@.socket", check / f"sessionmem@{key}.socket")
    shutil.copy(unit_dir / "sessionmem@.service", check / f"sessionmem@{key}.service")
    shutil.copy(dropin, check / dropin.parent.name / "store.conf")
    run = tmp_path / "xdg-run"
    run.mkdir(mode=0o700)

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["systemd-analyze", "--user", "verify", "--man=no", str(check / f"sessionmem@{key}.socket"),
                               str(check / f"sessionmem@{key}.service")], capture_output=True, text=True,
                              env=dict(e, XDG_RUNTIME_DIR=str(run)), timeout=60)

    v = verify()
    assert v.returncode == 0 and v.stdout.strip() == "" and v.stderr.strip() == "", v.stdout + v.stderr
    # the drop-in is read (its silence above means something): a broken one is named
    (check / dropin.parent.name / "store.conf").write_text(STORE_DROPIN.replace("AF_INET6", "AF_BOGUS"))
    assert "store.conf" in verify().stderr


@pytest.mark.skipif(not shutil.which("systemd-socket-activate"), reason="needs systemd-socket-activate")
def test_the_service_daemon_serves_the_recorded_store(tmp_path: Path, env: dict[str, str], pg_url: str) -> None:
    pytest.importorskip("psycopg", reason="the extra sessionmem[postgres] is not installed")
    root, e, config = project(tmp_path, env)
    url = pg_url.replace("postgresql:///", f"postgresql://sessionmem:{SECRET}@/", 1)
    e.update(SESSIONMEM_STORE=url, SESSIONMEM_PROJECT_KEY="example.com/me/proj")
    assert run_cli(["--project", str(root), "service", "install", "--no-start"], e).returncode == 0
    _, env_file, _ = layout(config, root)
    # The unit's environment is the env file's (as systemd's EnvironmentFile= gives it),
    # nothing of the shell's: the activator passes exactly those variables.
    assigned = [line for line in env_file.read_text().splitlines() if line]
    clean = {k: v for k, v in env.items() if not k.startswith(("SESSIONMEM_", "PG"))}
    sock = tmp_path / "act.sock"
    log = open(tmp_path / "log", "ab")
    cmd = ["systemd-socket-activate", "-l", str(sock), *[x for a in assigned for x in ("-E", a)],
           *DAEMON, "--idle-timeout", "5"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=clean)
    try:
        wait_for(lambda: "Listening on" in (tmp_path / "log").read_text(), what="the activator")
        with Session(project=root, socket=sock, autostart=False) as s:
            assert s.daemon.store == url.replace(SECRET, "***") and s.daemon.projectKey == "example.com/me/proj"
            s.add_message("user", "through the service")
            argv = Path(f"/proc/{s.daemon.pid}/cmdline").read_bytes()
            assert SECRET.encode() not in argv and b"postgresql" not in argv
    finally:
        proc.terminate()
        proc.wait(30)
    assert SECRET not in (tmp_path / "log").read_text()


def test_launchd_gets_the_store_in_its_environment_not_its_arguments(tmp_path: Path) -> None:
    store = store_env(tmp_path, {"SESSIONMEM_STORE": URL, "SESSIONMEM_PROJECT_KEY": "k", "PGPASSWORD": SECRET})
    doc: dict[str, Any] = plistlib.loads(render_plist(tmp_path, python="/opt/py/bin/python3", store=store))
    assert doc["EnvironmentVariables"] == {"SESSIONMEM_STORE": URL, "SESSIONMEM_PROJECT_KEY": "k", "PGPASSWORD": SECRET}
    assert doc["ProgramArguments"] == ["/opt/py/bin/python3", "-m", "sessionmemd", "--project", str(tmp_path)]
    shown = render_plist(tmp_path, store=store, masked=True)
    assert SECRET.encode() not in shown and b"postgresql://agents:***@db.internal/sm" in shown
    assert "EnvironmentVariables" not in plistlib.loads(render_plist(tmp_path, store=store_env(tmp_path, {})))
