"""README's Client API snippets run as written, against a real daemon (issue 16 item 22).
The integrations' snippets are not run here: the OpenAI Agents one needs a model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import Daemon, wait_for

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of a `## ` section (its `### ` subsections included)."""
    text = README.read_text()
    body = text[text.index(f"\n## {section}\n"):]
    body = body[: body.find("\n## ", 1)]
    return [part.split("\n```", 1)[0] for part in body.split("```python\n")[1:]]


def run(code: str, daemon: Daemon, env: dict[str, str]) -> subprocess.Popen[str]:
    e = dict(env, SESSIONMEM_PROJECT=str(daemon.root), SESSIONMEM_SOCKET=str(daemon.socket))
    return subprocess.Popen([sys.executable, "-c", code], env=e, cwd=daemon.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_the_client_api_snippet_runs(daemon: Daemon, env: dict[str, str]) -> None:
    blocks = python_blocks("Client API")
    assert len(blocks) == 3
    p = run(blocks[0], daemon, env)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out.splitlines()[0].startswith("user hi ") and out.splitlines()[1] == "1"
    with daemon.session() as s:
        assert s.get_current_task() == "Build X"
        assert sorted(m.content for m in s.get_all_messages() if m.role == "tool") == sorted(f"step {i}" for i in range(10))


def test_the_two_agents_snippet_runs(daemon: Daemon, env: dict[str, str]) -> None:
    code = python_blocks("Client API")[1]
    a, b = code.split("\n# agent B")  # two processes, as the snippet says
    b = "from sessionmem import Session\n# agent B" + b
    agent_b = run(b, daemon, env)
    try:
        with daemon.session() as s:
            wait_for(lambda: s.get_stats().watchers == 1, what="agent B to watch")
        agent_a = run(a, daemon, env)
        assert agent_a.wait(60) == 0, agent_a.communicate()[1]
        out, err = agent_b.communicate(timeout=60)
        assert agent_b.returncode == 0, err
        assert out.splitlines() == ["ticket now T-7", "review: T-7: parser fixed, ready for review"]
        again = run(a, daemon, env)  # T-7 is active now: the second claim is refused, as written
        _, err = again.communicate(timeout=60)
        assert again.returncode == 1 and "T-7 is taken: the active ticket is T-7" in err
    finally:
        agent_b.kill()
        agent_b.wait(10)



def test_the_transaction_snippet_runs(daemon: Daemon, env: dict[str, str]) -> None:
    with daemon.session() as s:
        s.set_context("plan", {"step": 1})
    p = run(python_blocks("Client API")[2], daemon, env)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out.splitlines() == ["[None, None, None]"]
    with daemon.session() as s:
        assert s.get_context("plan") == {"step": 2} and s.get_open_files() == ["src/parser.py"]
