"""Statements of the PostgreSQL store, sent now or collected to be sent later.

pgstore.PgStore._apply_to writes a batch through a :class:`Sink`: a psycopg cursor
(each statement sent as it comes; ``executemany`` pipelined), or :class:`Statements`,
which only collects them, so that a write turn of several daemons (pgshared) sends a
small turn's rows with its frames, revision, NOTIFY and COMMIT as one query: one
round trip. Sans-I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol


class Sink(Protocol):
    """Where :meth:`PgStore._apply_to` sends its statements: a psycopg cursor, or
    :class:`Statements`."""

    def execute(self, query: str, params: Sequence[Any] = ..., /) -> object: ...
    def executemany(self, query: str, params_seq: Iterable[Sequence[Any]], /) -> object: ...


class Statements:
    """Statements collected, not sent: a write turn (pgshared) sends them with its frames,
    revision, NOTIFY and COMMIT as one simple query, the values bound on the client
    (psycopg.ClientCursor), so a small turn's writing is one round trip. A message each
    is one INSERT each, in order: the identity column numbers them as executemany did."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Sequence[Any]]] = []

    def execute(self, query: str, params: Sequence[Any] = (), /) -> None:
        self.statements.append((query, params))

    def executemany(self, query: str, params_seq: Iterable[Sequence[Any]], /) -> None:
        self.statements += ((query, params) for params in params_seq)

    def chunks(self, size: int) -> Iterable[tuple[str, list[Any]]]:
        """The statements as queries of at most ``size`` each, with their values."""
        for i in range(0, len(self.statements), size):
            part = self.statements[i:i + size]
            yield "; ".join(q for q, _ in part), [x for _, params in part for x in params]
