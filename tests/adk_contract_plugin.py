"""A pytest plugin (``-p adk_contract_plugin``) that registers sessionmem as a backend of
Google ADK's session-service contract tests, the way their ``_conformance.py`` registers
its own: a ``_Backend(name, make, divergences)`` appended to ``BACKENDS``, ``make`` an
async context manager factory taking ``tmp_path``. Ours starts a REAL sessionmemd on a
real socket in ``tmp_path`` and yields a ``SessionmemSessionService`` on it; the daemon is
stopped after. Used by tests/test_adk_contract.py, which runs ADK's files in a subprocess.

``_conformance.session_service`` took its params from ``BACKENDS`` when it was decorated,
so appending to the list is not enough: the fixture definition's params are refreshed
from it (once, before pytest's own parametrization of the fixture reads them)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

BACKEND_NAME = "sessionmem"


def _answers(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


@contextlib.asynccontextmanager
async def make_sessionmem(tmp_path: Path) -> AsyncIterator[Any]:
    from sessionmem.integrations.adk import SessionmemSessionService

    proj = tmp_path / "proj"
    proj.mkdir(exist_ok=True)
    run = tmp_path / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    sock = tmp_path / "d.sock"
    env = dict(os.environ, XDG_RUNTIME_DIR=str(run), SESSIONMEM_NO_AUTOSTART="1")
    cmd = [sys.executable, "-m", "sessionmemd", "--project", str(proj), "--socket", str(sock),
           "--db", str(proj / ".arela" / "memory" / "session.db")]
    store = os.environ.get("ADK_CONTRACT_STORE")  # a PostgreSQL URL: the same tests on that store
    if store:
        cmd += ["--store", store, "--project-key", str(proj)]
    with open(tmp_path / "daemon.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
    try:
        for _ in range(3000):
            if proc.poll() is not None:
                raise RuntimeError(f"sessionmemd exited with {proc.returncode}: "
                                   f"{(tmp_path / 'daemon.log').read_text(errors='replace')}")
            if _answers(sock):
                break
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError("sessionmemd did not answer within 30 s")
        service = SessionmemSessionService(project=proj, socket=sock, autostart=False)
        try:
            yield service
        finally:
            await service.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _register(conformance: Any) -> None:
    from sessionmem.integrations.adk import DIVERGENCES

    if not any(b.name == BACKEND_NAME for b in conformance.BACKENDS):
        conformance.BACKENDS.append(conformance._Backend(BACKEND_NAME, make_sessionmem, dict(DIVERGENCES)))


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "session_service" not in metafunc.fixturenames:
        return
    package = metafunc.module.__name__.rpartition(".")[0]
    conformance = sys.modules.get(f"{package}._conformance")
    if conformance is None:
        return
    _register(conformance)
    for fixturedef in metafunc._arg2fixturedefs.get("session_service", ()):
        params = fixturedef.params
        if params is not None and len(params) != len(conformance.BACKENDS) and \
                fixturedef.func.__module__ == conformance.__name__:
            fixturedef.params = tuple(conformance.BACKENDS)  # type: ignore[misc]
