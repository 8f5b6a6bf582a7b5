"""Google ADK's own session-service contract tests, run against SessionmemSessionService.

ADK's ``test_session_service.py`` and ``_conformance.py`` live beside the checkout in
``../shared/adk-contract/`` (not copied into the project). This test lays them out as
the package they come from (``<pkg>/sessions/``, in tmp_path: their relative imports
need it), runs pytest on them in a subprocess with ``adk_contract_plugin`` registering
our backend, selects the contract tests (those taking ``session_service``) for it with
``-k``, and checks the outcome: every contract test ran for our backend and passed, or is
a strict xfail listed in ``sessionmem.integrations.adk.DIVERGENCES``."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("google.adk")
pytest.importorskip("pytest_asyncio")

from sessionmem.integrations.adk import DIVERGENCES  # noqa: E402

pytestmark = pytest.mark.both_stores

CONTRACT = Path(__file__).resolve().parents[2] / "shared" / "adk-contract"
HERE = Path(__file__).resolve().parent

# What _conformance imports from beside it in ADK's tree (for its Redis backend, which
# this run deselects): a stand-in so the module imports; using it fails loudly.
FAKE_REDIS = '''
class FakeRedisAsync:
    def __init__(self, *a, **k):
        raise RuntimeError("the Redis backend is not run by sessionmem's contract test")
'''


def contract_tests() -> set[str]:
    """The tests of ADK's file that take the shared ``session_service`` fixture (not the
    ones that parametrize an argument of that name themselves)."""
    tree = ast.parse((CONTRACT / "test_session_service.py").read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            if "session_service" not in [a.arg for a in node.args.args]:
                continue
            direct = any(isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "parametrize"
                         and isinstance(d.args[0], ast.Constant) and d.args[0].value == "session_service"
                         for d in node.decorator_list)
            if not direct:
                names.add(node.name)
    return names


def lay_out(tmp_path: Path) -> Path:
    root = tmp_path / "adkc_root"
    pkg = root / "adkc"
    for sub in ("sessions", "integrations/redis"):
        (pkg / sub).mkdir(parents=True)
    for init in (pkg, pkg / "sessions", pkg / "integrations", pkg / "integrations" / "redis"):
        (init / "__init__.py").write_text("")
    (pkg / "integrations" / "redis" / "_fake_redis.py").write_text(FAKE_REDIS)
    for name in ("test_session_service.py", "_conformance.py"):
        shutil.copyfile(CONTRACT / name, pkg / "sessions" / name)
    return root


def test_adk_contract_suite(tmp_path: Path, store: str | None) -> None:
    if not (CONTRACT / "test_session_service.py").exists():
        pytest.skip(f"ADK's contract tests are not at {CONTRACT} (see its README: beside the checkout)")
    root = lay_out(tmp_path)
    report = tmp_path / "report.xml"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(root), os.environ.get("PYTHONPATH", "")]))
    env.pop("ADK_CONTRACT_STORE", None)
    if store is not None:
        env["ADK_CONTRACT_STORE"] = store
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "adk_contract_plugin", "-p", "no:cacheprovider",
           "--rootdir", str(root), "-c", os.devnull, "-o", "asyncio_mode=auto",
           "-o", "asyncio_default_fixture_loop_scope=function", "--junitxml", str(report),
           "-k", "sessionmem or test_recorded_divergences_name_a_contract_test",
           str(root / "adkc" / "sessions" / "test_session_service.py")]
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    tail = (done.stdout + done.stderr)[-6000:]
    assert report.exists(), tail

    outcomes: dict[str, list[str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name", "")
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        skipped = case.find("skipped")
        if skipped is not None and (skipped.get("type") == "pytest.xfail"):
            kinds = ["xfailed"]
        outcomes.setdefault(name, []).extend(kinds or ["passed"])

    assert outcomes.get("test_recorded_divergences_name_a_contract_test") == ["passed"], tail
    ours = {name: kinds for name, kinds in outcomes.items() if "[" in name and "sessionmem" in name}
    expected = contract_tests()
    assert len(expected) >= 30, expected  # ADK's contract (31 distinct names in 2.13), not an empty file
    ran = {name.partition("[")[0] for name in ours}
    assert ran == expected, (sorted(expected - ran), tail)
    for name, kinds in sorted(ours.items()):
        base = name.partition("[")[0]
        want = ["xfailed"] if base in DIVERGENCES else ["passed"]
        assert kinds == want, (name, kinds, tail)
    assert done.returncode == 0, tail
