"""`sessionmem ui`: the real daemon, the real `sessionmem ui` process, and (for the page)
Debian's chromium, headless, driven over the DevTools protocol (tests/cdp.py)."""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cdp import Browser, find_chromium
from conftest import CLI, Daemon, run_cli, wait_for

needs_chromium = pytest.mark.skipif(find_chromium() is None,
                                    reason="chromium is not installed (apt-get install chromium)")


class UI:
    """A running `sessionmem ui`: its URL, port and token."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1" and parts.port
        self.port = parts.port
        self.token = parts.query.removeprefix("token=")
        self.base = f"http://127.0.0.1:{self.port}"

    def get(self, path: str, headers: dict[str, str] | None = None, token: bool = True) -> tuple[int, bytes]:
        if token:
            path += ("&" if "?" in path else "?") + "token=" + self.token
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, body
        return json.loads(body)


def start_ui(daemon: Daemon, env: dict[str, str], *extra: str, **more_env: str) -> UI:
    e = {**env, **more_env}
    proc = subprocess.Popen([*CLI, "--project", str(daemon.root), "--socket", str(daemon.socket), *extra, "ui"],
                            env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline().strip() if ready else ""
    if not line.startswith("http://"):
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"sessionmem ui printed {line!r}; stderr:\n{err}")
    return UI(proc, line)


def stop_ui(ui: UI) -> None:
    if ui.proc.poll() is None:
        ui.proc.send_signal(signal.SIGINT)
        try:
            ui.proc.wait(15)
        except subprocess.TimeoutExpired:
            ui.proc.kill()
            ui.proc.wait(10)
            raise AssertionError("sessionmem ui did not stop on SIGINT") from None


@pytest.fixture
def ui(daemon: Daemon, env: dict[str, str]) -> Iterator[UI]:
    u = start_ui(daemon, env)
    yield u
    stop_ui(u)
    assert u.proc.stderr is not None
    err = u.proc.stderr.read()
    assert u.proc.returncode == 0 and "Traceback" not in err, err


def cli(daemon: Daemon, env: dict[str, str], *args: str) -> str:
    r = run_cli(["--project", str(daemon.root), "--socket", str(daemon.socket), *args], env)
    assert r.returncode == 0, r.stderr
    return r.stdout


# -- the gate: token, Host, Origin ------------------------------------------------------
def test_refuses_without_the_token_another_origin_or_host(ui: UI) -> None:
    for path in ("/", "/api/state", "/api/sessions", "/api/messages?session=x", "/api/search?q=x", "/events",
                 "/static/app.js"):
        assert ui.get(path, token=False)[0] == 403, path
        status, body = ui.get(path + ("&" if "?" in path else "?") + "token=wrong" + ui.token[5:], token=False)
        assert status == 403, path
        assert ui.get(path, {"Origin": "http://evil.example"})[0] == 403, path
        assert ui.get(path, {"Origin": f"http://127.0.0.1:{ui.port + 1}"})[0] == 403, path
        assert ui.get(path, {"Host": f"evil.example:{ui.port}"})[0] == 403, path  # DNS rebinding
        assert ui.get(path, {"X-Sessionmem-Token": "x" * len(ui.token)}, token=False)[0] == 403, path
    status, body = ui.get("/", {"Origin": ui.base})
    assert status == 200 and b"<title>sessionmem</title>" in body and ui.token.encode() in body
    assert ui.get("/api/sessions", {"X-Sessionmem-Token": ui.token}, token=False)[0] == 200
    assert ui.get("/api/sessions", {"Host": f"localhost:{ui.port}"})[0] == 200
    status, body = ui.get("/static/app.js")
    assert status == 200 and b"textContent" in body
    assert b"innerHTML" not in body  # untrusted data reaches the page as text only


def test_serves_on_loopback_only(ui: UI) -> None:
    addrs = [a for a in _listening(ui.proc.pid)]
    assert addrs == [("127.0.0.1", ui.port)]


def _listening(pid: int) -> list[tuple[str, int]]:
    """The TCP sockets process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                host, port = cols[1].split(":")
                ip = socket.inet_ntop(socket.AF_INET, bytes.fromhex(host)[::-1]) if table == "tcp" else host
                found.append((ip, int(port, 16)))
    return found


# -- the reads: state, paging, the feed --------------------------------------------------
def test_state_and_older_pages(daemon: Daemon, ui: UI) -> None:
    s = daemon.session()
    s.add_messages([{"role": "user", "content": f"m{i}"} for i in range(120)])
    s.set_current_task("page it")
    st = ui.json("/api/state")
    sess = st["session"]
    assert sess["task"] == "page it" and sess["messagesCount"] == 120
    assert [m["content"] for m in sess["messages"]] == [f"m{i}" for i in range(70, 120)]
    r = ui.json(f"/api/messages?session={sess['sessionId']}&skip=50&limit=50")
    assert r["revision"] == sess["revision"]
    assert [m["content"] for m in r["messages"]] == [f"m{i}" for i in range(20, 70)]
    r = ui.json(f"/api/messages?session={sess['sessionId']}&skip=100&limit=50")
    assert [m["content"] for m in r["messages"]] == [f"m{i}" for i in range(0, 20)]
    r = ui.json(f"/api/messages?session={sess['sessionId']}&before=30&limit=50")  # by index (what the page uses)
    assert [m["content"] for m in r["messages"]] == [f"m{i}" for i in range(0, 30)] and r["before"] == 0
    r = ui.json(f"/api/messages?session={sess['sessionId']}&before=1000&limit=5")  # past the end: the end
    assert [m["content"] for m in r["messages"]] == [f"m{i}" for i in range(115, 120)] and r["before"] == 115
    assert ui.get(f"/api/messages?session={sess['sessionId']}&before=-1")[0] == 400
    assert ui.get(f"/api/messages?session={sess['sessionId']}&before=x")[0] == 400
    assert ui.get(f"/api/messages?session={sess['sessionId']}&skip=-1")[0] == 400
    assert ui.get("/api/messages?session=nope")[0] == 404
    assert ui.get("/api/state?session=nope")[0] == 404


def test_pinned_by_the_session_option(daemon: Daemon, env: dict[str, str]) -> None:
    s = daemon.session()
    other = s.create_session("other")
    s.bound(other).set_current_task("theirs")
    u = start_ui(daemon, env, "--session", "other")
    try:
        st = u.json("/api/state")
        assert st["follow"] is False
        assert st["session"]["sessionId"] == "other" and st["session"]["task"] == "theirs"
        assert {i["sessionId"] for i in st["sessions"]} == {"other", s.get_session_id()}
    finally:
        stop_ui(u)


def _events(ui: UI, path: str, headers: dict[str, str], n: int) -> list[dict[str, str]]:
    """The first ``n`` events with an id on the SSE stream at ``path``."""
    sock = socket.create_connection(("127.0.0.1", ui.port), timeout=10)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"GET {path}&token={ui.token} HTTP/1.1\r\nHost: 127.0.0.1:{ui.port}\r\n{head}\r\n".encode())
        buf = b""
        got: list[dict[str, str]] = []
        while len(got) < n:
            chunk = sock.recv(65536)
            assert chunk, "stream ended"
            buf += chunk
            got = []
            for block in buf.replace(b"\r\n", b"\n").split(b"\n\n"):
                fields = dict(line.split(": ", 1) for line in block.decode(errors="replace").split("\n")
                              if ": " in line and not line.startswith(("HTTP", "date", "server")))
                if "id" in fields and "event" in fields:
                    got.append(fields)
        return got[:n]
    finally:
        sock.close()


def test_events_carry_the_revision_and_resume_from_last_event_id(daemon: Daemon, ui: UI) -> None:
    s = daemon.session()
    for i in range(4):
        s.set_current_task(f"t{i}")
    revs = [i.revision for i in s.list_sessions()]
    last = revs[0]
    got = _events(ui, f"/events?since={last - 4}", {}, 4)
    assert [int(e["id"]) for e in got] == list(range(last - 3, last + 1))
    assert [json.loads(e["data"])["task"] for e in got] == ["t0", "t1", "t2", "t3"]
    # A reconnecting browser sends the last id it saw: that wins over the URL's since.
    got = _events(ui, f"/events?since={last - 4}", {"Last-Event-ID": str(last - 2)}, 2)
    assert [json.loads(e["data"])["task"] for e in got] == ["t2", "t3"]


def test_a_stream_whose_reader_stops_is_ended(daemon: Daemon, env: dict[str, str]) -> None:
    """Bounded: a browser that stops reading holds no more than a send's timeout of
    changes in `sessionmem ui`: its stream (and its watch on the daemon) is ended."""
    u = start_ui(daemon, env, SESSIONMEM_UI_SEND_TIMEOUT="1")
    s = daemon.session()
    sock = socket.socket()
    try:
        sock.settimeout(10)
        sock.connect(("127.0.0.1", u.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET /events?token={u.token} HTTP/1.1\r\nHost: 127.0.0.1:{u.port}\r\n\r\n".encode())
        wait_for(lambda: s.get_stats().watchers == 1, 10, "the page's watch")
        big = "x" * 65536
        sent = 0

        def ended() -> bool:
            nonlocal sent
            if s.get_stats().watchers == 0:
                return True
            s.add_messages([{"role": "assistant", "content": big}] * 8)  # never read by the socket
            sent += 8
            return False

        wait_for(ended, 30, "the stream of a reader that stopped to end")
        assert sent < 2000  # it ended long before the daemon's change log would drop the watcher
        sock.settimeout(10)
        assert u.proc.poll() is None  # the server goes on, and said nothing about it
        assert u.json("/api/sessions")["sessions"][0]["messagesCount"] == sent
    finally:
        sock.close()
        stop_ui(u)
    assert u.proc.stderr is not None
    assert "Traceback" not in u.proc.stderr.read()


def test_the_cli_does_not_load_the_web_stack_to_start() -> None:
    code = ("import sys; from sessionmem.cli import app; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'sse_starlette')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_page_files_ship_in_the_package() -> None:
    import importlib.resources

    static = importlib.resources.files("sessionmem.ui").joinpath("static")
    for name in ("index.html", "app.js", "style.css"):
        assert static.joinpath(name).is_file()
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"sessionmem.ui" = ["static/*.html", "static/*.js", "static/*.css"]' in pyproject
    page = static.joinpath("index.html").read_text()
    assert "http://" not in page and "https://" not in page  # nothing from a CDN or the internet


# -- the page in a real browser ----------------------------------------------------------
@pytest.fixture
def browser() -> Iterator[Browser]:
    with Browser() as b:
        yield b


def show(b: Browser, url: str) -> None:
    b.navigate(url)
    wait_for(lambda: b.eval("window.sessionmemLoads") == 1, 15, "the page to load its state")
    wait_for(lambda: b.text("status") == "live", 15, "the page's feed")
    b.eval("window.sameDocument = 'yes'")  # gone if the page reloads


def messages(b: Browser) -> list[str]:
    return b.eval("[...document.querySelectorAll('#messages .content')].map(e => e.textContent)") or []


@needs_chromium
def test_page_shows_the_session_and_follows_the_cli_live(daemon: Daemon, env: dict[str, str], ui: UI,
                                                         browser: Browser, tmp_path: Path) -> None:
    cli(daemon, env, "task", "set", "Port the parser to the new AST")
    show(browser, ui.url)
    assert browser.text("task") == "Port the parser to the new AST"
    assert browser.text("leases") == "none"
    cli(daemon, env, "lease", "acquire", "ticket:PROJ-142", "--ttl", "5m", "--owner", "agent-7")
    wait_for(lambda: "ticket:PROJ-142 (agent-7, token" in (browser.text("leases") or ""), 5, "the lease")
    token = browser.eval("document.getElementById('leases').textContent.match(/token (\\d+)/)[1]")
    cli(daemon, env, "lease", "release", "ticket:PROJ-142", "--token", token)
    wait_for(lambda: browser.text("leases") == "none", 5, "the released lease gone")
    cli(daemon, env, "lease", "acquire", "short", "--ttl", "1s", "--owner", "agent-8")
    wait_for(lambda: "short (agent-8" in (browser.text("leases") or ""), 5, "the short lease")
    wait_for(lambda: browser.text("leases") == "none", 10, "the lease gone when its time ran out")
    # Changes made by CLI processes appear without a reload.
    cli(daemon, env, "task", "set", "Fix the flaky lexer test")
    wait_for(lambda: browser.text("task") == "Fix the flaky lexer test", 5, "the new task")
    cli(daemon, env, "ticket", "set", "PROJ-142")
    cli(daemon, env, "files", "track", "src/lexer.py", "tests/test_lexer.py")
    cli(daemon, env, "ctx", "set", "branch", '"fix/lexer"')
    hostile = '<img src=x onerror="window.pwned=1">'
    cli(daemon, env, "msg", "add", "user", hostile)
    cli(daemon, env, "msg", "add", "assistant", "Looking at the lexer now.")
    wait_for(lambda: messages(browser) == ["Looking at the lexer now.", hostile], 5, "the messages, newest first")
    wait_for(lambda: browser.text("ticket") == "PROJ-142", 5, "the ticket")
    wait_for(lambda: browser.eval("[...document.querySelectorAll('#files li')].map(e => e.textContent)")
             == ["src/lexer.py", "tests/test_lexer.py"], 5, "the files")
    wait_for(lambda: "fix/lexer" in (browser.text("context") or ""), 5, "the context")
    assert browser.eval("document.querySelectorAll('#detail img').length") == 0  # shown as text
    assert browser.eval("window.pwned") is None
    cli(daemon, env, "files", "untrack", "src/lexer.py")
    cli(daemon, env, "ctx", "del", "branch")
    wait_for(lambda: browser.eval("document.querySelectorAll('#files li').length") == 1, 5, "the untracked file")
    wait_for(lambda: browser.eval("document.querySelectorAll('#context tr').length") == 0, 5, "the deleted key")
    assert browser.eval("window.sameDocument") == "yes" and browser.eval("window.sessionmemLoads") == 1
    browser.screenshot(tmp_path / "ui.png")
    assert (tmp_path / "ui.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Without the token the page is refused.
    browser.navigate(ui.base + "/")
    wait_for(lambda: "403 Forbidden" in (browser.eval("document.body && document.body.innerText") or ""), 10,
             "the refusal")
    assert browser.eval("document.getElementById('task')") is None


@needs_chromium
def test_page_follows_the_current_session_and_lists_every_one(daemon: Daemon, env: dict[str, str], ui: UI,
                                                              browser: Browser) -> None:
    first = cli(daemon, env, "id").strip()
    show(browser, ui.url)
    assert browser.text("session-id") == first
    cli(daemon, env, "sessions", "new", "--id", "second", "--use")
    cli(daemon, env, "task", "set", "in the second")
    wait_for(lambda: browser.text("session-id") == "second" and browser.text("task") == "in the second", 5,
             "the page to follow the switch")
    wait_for(lambda: browser.eval("[...document.querySelectorAll('#sessions li')].map(e => e.dataset.sessionId)"
                                  ".sort().join(' ')") == " ".join(sorted([first, "second"])), 5, "both sessions")
    # Clicking another session shows it, and stops following.
    browser.eval(f"document.querySelector('#sessions li[data-session-id=\"{first}\"]').click()")
    wait_for(lambda: browser.text("session-id") == first, 5, "the clicked session")
    cli(daemon, env, "--session", first, "task", "set", "back in the first")
    wait_for(lambda: browser.text("task") == "back in the first", 5, "a change to the shown session")
    # The shown session deleted: the page shows the current one again.
    cli(daemon, env, "sessions", "delete", first)
    wait_for(lambda: browser.text("session-id") == "second" and browser.text("task") == "in the second", 5,
             "the current session after the shown one went")
    wait_for(lambda: browser.eval("document.querySelectorAll('#sessions li').length") == 1, 5, "the list without it")


@needs_chromium
def test_page_pages_older_messages(daemon: Daemon, ui: UI, browser: Browser) -> None:
    daemon.session().add_messages([{"role": "user", "content": f"m{i}"} for i in range(120)])
    show(browser, ui.url)
    assert messages(browser) == [f"m{i}" for i in range(119, 69, -1)]
    for shown in (100, 120):
        browser.eval("document.getElementById('older').click()")
        wait_for(lambda n=shown: len(messages(browser)) == n, 5, f"{shown} messages")
    assert messages(browser) == [f"m{i}" for i in range(119, -1, -1)]
    assert browser.eval("document.getElementById('older').hidden") is True


@needs_chromium
def test_page_pages_back_while_messages_arrive(daemon: Daemon, ui: UI, browser: Browser) -> None:
    # "older" asks for the page before an index (getRecentMessages before): messages
    # arriving between two clicks move nothing, and no message shows twice or is skipped.
    s = daemon.session()
    s.add_messages([{"role": "user", "content": f"m{i}"} for i in range(160)])
    show(browser, ui.url)
    browser.eval("document.getElementById('older').click()")
    wait_for(lambda: len(messages(browser)) == 100, 5, "100 messages")
    s.add_message("user", "m160")  # live: shown at the top
    wait_for(lambda: messages(browser)[:1] == ["m160"], 5, "the new message")
    while not browser.eval("document.getElementById('older').hidden"):
        n = len(messages(browser))
        browser.eval("document.getElementById('older').click()")
        wait_for(lambda n=n: len(messages(browser)) > n, 5, "an older page")
    assert messages(browser) == [f"m{i}" for i in range(160, -1, -1)]
    s.close()


@needs_chromium
def test_page_search_finds_a_message(daemon: Daemon, ui: UI, browser: Browser) -> None:
    s = daemon.session()
    s.add_message("user", "nothing here")
    s.add_message("assistant", "the <b>flaky</b> test was the clock")
    show(browser, ui.url)
    browser.eval("document.getElementById('search-input').value = 'flaky clock';"
                 "document.getElementById('search').requestSubmit()")
    wait_for(lambda: browser.eval("document.querySelectorAll('#hits li.hit').length") == 1, 5, "one hit")
    assert browser.eval("document.querySelector('#hits mark').textContent") == "flaky"
    assert "<b>flaky</b>" in browser.eval("document.querySelector('#hits .hit-snippet').textContent")  # text, not HTML
    assert browser.eval("document.querySelector('#hits .hit-head').textContent").count("#1") == 1
    browser.eval("document.getElementById('search-input').value = '***';"
                 "document.getElementById('search').requestSubmit()")
    wait_for(lambda: "word" in browser.eval("document.getElementById('hits').textContent"), 5, "the reason")


@needs_chromium
def test_page_resumes_after_the_daemon_restarts(daemon: Daemon, env: dict[str, str], ui: UI,
                                                browser: Browser) -> None:
    cli(daemon, env, "task", "set", "before the restart")
    show(browser, ui.url)
    assert browser.text("task") == "before the restart"
    assert daemon.stop() == 0
    daemon.start()
    cli(daemon, env, "task", "set", "after the restart")
    wait_for(lambda: browser.text("task") == "after the restart", 10, "the change after the restart")
    assert browser.eval("window.sameDocument") == "yes"



@needs_chromium
def test_the_latency_benchmark_measures_the_page() -> None:
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        import ui_bench
    finally:
        sys.path.remove(str(bench))
    r = ui_bench.measure(3)
    assert r["changes"] == 3
    assert 0 <= r["baseline_p50_ms"] and r["baseline_p50_ms"] - 1 <= r["page_p50_ms"] < 10_000


def test_a_since_the_daemon_cannot_replay_is_a_reset_event(ui: UI) -> None:
    sock = socket.create_connection(("127.0.0.1", ui.port), timeout=10)
    try:
        sock.sendall(f"GET /events?since=999999999&token={ui.token} HTTP/1.1\r\nHost: 127.0.0.1:{ui.port}\r\n\r\n"
                     .encode())
        buf = b""
        while b"event: reset" not in buf:
            chunk = sock.recv(65536)
            assert chunk, buf
            buf += chunk
    finally:
        sock.close()


@needs_chromium
def test_page_rereads_everything_when_the_feed_cannot_resume(daemon: Daemon, env: dict[str, str], ui: UI,
                                                             browser: Browser, tmp_path: Path) -> None:
    """The daemon comes back on another database (its revisions behind the page's): the
    watch hears -32010, the page a reset, and it reads everything again."""
    for i in range(3):
        cli(daemon, env, "task", "set", f"old database {i}")
    show(browser, ui.url)
    assert browser.text("task") == "old database 2"
    assert daemon.stop() == 0
    daemon.db = tmp_path / "other.db"
    daemon.start()
    cli(daemon, env, "task", "set", "new database")
    wait_for(lambda: browser.text("task") == "new database", 15, "the page to re-read")
    assert browser.text("session-id") == cli(daemon, env, "id").strip()
    assert browser.eval("window.sessionmemLoads") == 2


def test_stops_on_ctrl_c_with_a_browser_still_connected(daemon: Daemon, env: dict[str, str]) -> None:
    u = start_ui(daemon, env)
    sock = socket.socket()
    try:
        sock.settimeout(10)
        sock.connect(("127.0.0.1", u.port))
        sock.sendall(f"GET /events?token={u.token} HTTP/1.1\r\nHost: 127.0.0.1:{u.port}\r\n\r\n".encode())
        buf = b""
        while b"event: hello" not in buf:
            chunk = sock.recv(65536)
            assert chunk, buf
            buf += chunk
        wait_for(lambda: daemon.session().get_stats().watchers == 1, 10, "the stream's watch")
        stop_ui(u)  # SIGINT: fails unless it exits within 15 s
        assert u.proc.returncode == 0
        assert u.proc.stderr is not None and "Traceback" not in u.proc.stderr.read()
    finally:
        sock.close()
        if u.proc.poll() is None:  # a failed assertion above: leave no server behind
            u.proc.kill()
            u.proc.wait(10)


def test_a_port_in_use_is_one_line_and_exit_1(daemon: Daemon, env: dict[str, str]) -> None:
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = run_cli(["--project", str(daemon.root), "--socket", str(daemon.socket), "ui", "--port", str(port)], env)
        assert r.returncode == 1
        assert r.stderr.startswith(f"sessionmem: cannot serve on 127.0.0.1:{port}: ") and "Traceback" not in r.stderr
        assert r.stdout == ""
    finally:
        taken.close()


@needs_chromium
def test_page_screenshot_shows_the_search(daemon: Daemon, env: dict[str, str], ui: UI, browser: Browser,
                                          tmp_path: Path) -> None:
    """The README's picture (docs/ui.png): a working session and a search in its box.
    Written there when SESSIONMEM_UPDATE_SCREENSHOT=1; otherwise only to tmp_path."""
    s = daemon.session()
    s.create_session("reviewer", make_current=False)
    r = daemon.session("reviewer")
    r.set_current_task("Review PR #418: rate limiter for /v2/orders")
    r.add_message("assistant", "The limiter's clock is mocked in the test: that is why it was flaky before.")
    r.close()
    cli(daemon, env, "task", "set", "Fix the N+1 query in GET /v2/orders (order lines loaded one by one)")
    cli(daemon, env, "ticket", "set", "API-1287")
    cli(daemon, env, "files", "track", "app/orders/views.py", "app/orders/serializers.py")
    cli(daemon, env, "ctx", "set", "branch", '"fix/orders-n-plus-one"')
    cli(daemon, env, "lease", "acquire", "ticket:API-1287", "--ttl", "30m", "--owner", "agent-2")
    for role, text in [
        ("user", "The orders list endpoint got slow again: p95 is 840 ms for 50 orders. Can you find out why?"),
        ("assistant", "Profiling GET /v2/orders?limit=50: 51 SQL queries per request. "
                      "OrderSerializer.get_lines() runs one SELECT per order."),
        ("assistant", "Changed the queryset to prefetch_related('lines__product'). Now 3 queries per request."),
        ("user", "Nice. Is the flaky orders test related?"),
        ("assistant", "No: the flaky test was the clock in test_rate_limit; it is mocked now."),
    ]:
        cli(daemon, env, "msg", "add", role, text)
    show(browser, ui.url)
    browser.eval("document.getElementById('search-input').value = 'flaky';"
                 "document.getElementById('search').requestSubmit()")
    wait_for(lambda: browser.eval("document.querySelectorAll('#hits li.hit').length") == 3, 5, "three hits")
    assert "ticket:API-1287 (agent-2" in (browser.text("leases") or "")
    shot = tmp_path / "ui.png"
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("SESSIONMEM_UPDATE_SCREENSHOT") == "1":
        (Path(__file__).resolve().parents[1] / "docs" / "ui.png").write_bytes(shot.read_bytes())
    s.close()
