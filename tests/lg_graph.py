"""The graph the LangGraph tests run, in the test process and in a second process
(``python tests/lg_graph.py SOCKET PROJECT THREAD``): two nodes, a list reduced by
appending, an interrupt before the second node."""

from __future__ import annotations

import json
import operator
import os
import sys
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict):
    steps: Annotated[list[str], operator.add]
    n: int


def first(state: State) -> dict[str, Any]:
    return {"steps": [f"first@{os.getpid()}"], "n": state["n"] + 1}


def second(state: State) -> dict[str, Any]:
    return {"steps": [f"second@{os.getpid()}"], "n": state["n"] * 10}


def build(checkpointer: Any) -> Any:
    g = StateGraph(State)
    g.add_node("first", first)
    g.add_node("second", second)
    g.add_edge(START, "first")
    g.add_edge("first", "second")
    g.add_edge("second", END)
    return g.compile(checkpointer=checkpointer, interrupt_before=["second"])


if __name__ == "__main__":  # the second process: resume the thread, print what it saw
    from sessionmem.integrations.langgraph import SessionmemSaver

    sock, project, thread = sys.argv[1:4]
    with SessionmemSaver(project=project, socket=sock, autostart=False) as saver:
        graph = build(saver)
        config = {"configurable": {"thread_id": thread}}
        seen = graph.get_state(config)
        final = graph.invoke(None, config)  # resume: runs "second"
        print(json.dumps({"seen": seen.values, "next": list(seen.next), "final": final,
                          "history": len(list(graph.get_state_history(config)))}))
