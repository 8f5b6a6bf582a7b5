"""SessionmemSaver against LangGraph's own checkpointer conformance suite
(langgraph-checkpoint-conformance 0.0.2), registered the way the suite registers a
saver (``@checkpointer_test``), on a real daemon."""

from __future__ import annotations

import asyncio
from importlib.metadata import version

import pytest

pytest.importorskip("langgraph.checkpoint.conformance", reason="needs the extra sessionmem[langgraph]")

from langgraph.checkpoint.conformance import checkpointer_test, validate  # noqa: E402
from langgraph.checkpoint.conformance.capabilities import (  # noqa: E402
    BASE_CAPABILITIES,
    EXTENDED_CAPABILITIES,
    Capability,
)
from langgraph.checkpoint.conformance.report import ProgressCallbacks  # noqa: E402

from conftest import Daemon  # noqa: E402
from sessionmem.integrations.langgraph import SessionmemSaver  # noqa: E402

CONFORMANCE_VERSION = "0.0.2"
pytestmark = pytest.mark.both_stores


def test_the_suite_is_the_version_named() -> None:
    assert version("langgraph-checkpoint-conformance") == CONFORMANCE_VERSION


def test_passes_the_base_capabilities(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    made: list[SessionmemSaver] = []

    @checkpointer_test(name="SessionmemSaver")
    async def sessionmem_saver():  # type: ignore[no-untyped-def]
        saver = SessionmemSaver(project=daemon.root, socket=daemon.socket, autostart=False)
        made.append(saver)
        yield saver
        saver.close()

    report = asyncio.run(validate(sessionmem_saver, progress=ProgressCallbacks.verbose()))
    out = capsys.readouterr().out
    failures = {name: r.failures for name, r in report.results.items() if r.failures}
    assert report.passed_all_base(), f"{failures}\n{out}"
    for cap in BASE_CAPABILITIES:
        r = report.results[cap.value]
        assert r.detected and r.tests_failed == 0 and r.tests_passed > 0, (cap, r)
    # Of the extended capabilities, copy_thread is implemented (a fork of the thread's
    # session) and passes; delete_for_runs and prune are not, and the suite says so.
    copy = report.results[Capability.COPY_THREAD.value]
    assert copy.detected and copy.passed is True and copy.tests_passed > 0, copy
    assert {n for n, r in report.results.items() if not r.detected} == {
        c.value for c in EXTENDED_CAPABILITIES - {Capability.COPY_THREAD}}
    # A fresh saver per capability, as the suite makes them, each on the real daemon.
    assert len(made) == len(Capability)
    with daemon.session() as s:
        assert any(i.sessionId.startswith("lg:") for i in s.list_sessions())
