"""LangGraph on sessionmem: a checkpointer and a store (extra ``sessionmem[langgraph]``).

    from langgraph.graph import StateGraph
    from sessionmem.integrations.langgraph import SessionmemSaver, SessionmemStore

    graph = builder.compile(checkpointer=SessionmemSaver(), store=SessionmemStore())
    graph.invoke(inputs, {"configurable": {"thread_id": "t-1"}})

A thread's checkpoints live in the session ``lg:<thread_id>``, the store's items in the
session ``lg-store``, as keyed records (keys.py says which); every process of the
project sees them, and ``sessionmem watch`` shows them land.
"""

from __future__ import annotations

try:
    import langgraph.checkpoint.base  # noqa: F401
    import langgraph.store.base  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sessionmem.integrations.langgraph needs LangGraph: pip install 'sessionmem[langgraph]'"
    ) from None

from .saver import SessionmemSaver
from .store import SessionmemStore

__all__ = ["SessionmemSaver", "SessionmemStore"]
