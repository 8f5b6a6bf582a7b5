"""Several client processes on one daemon: nobody loses anybody's writes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import Daemon

WRITER = textwrap.dedent(
    """
    import sys
    from sessionmem import Session
    name, n = sys.argv[1], int(sys.argv[2])
    with Session(project=sys.argv[3], socket=sys.argv[4], autostart=False) as s:
        for i in range(n):
            s.add_message("user", f"{name}-{i}")
            s.set_context(f"{name}-last", i)
            if i % 10 == 0:
                s.track_open_file(f"{name}-{i}.py")
        seen = s.get_all_messages()
        print(len(seen))
    """
)


def test_two_processes_write_concurrently_and_see_every_write(daemon: Daemon) -> None:
    n = 300
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, name, str(n), str(daemon.root), str(daemon.socket)],
                         stdout=subprocess.PIPE, text=True, env=daemon.env)
        for name in ("a", "b")
    ]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        assert int(out) >= n  # each saw at least its own writes
    with daemon.session() as s:
        msgs = [m.content for m in s.get_all_messages()]
        assert len(msgs) == 2 * n
        for name in ("a", "b"):
            mine = [m for m in msgs if m.startswith(name + "-")]
            assert mine == [f"{name}-{i}" for i in range(n)]  # each writer's in its order
            assert s.get_context(f"{name}-last") == n - 1
        assert len(s.get_open_files()) == 2 * (n // 10)
    daemon.stop()
    daemon.start()
    with daemon.session() as s:  # and all of it was saved
        assert len(s.get_all_messages()) == 2 * n
