"""Saving file changes: one snapshot of N newly tracked files (issue 9: it was one
table scan per path, 20,000 files took ~10-24 s).

    python benchmarks/files_bench.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from sessionmemd.batch import Batch
from sessionmemd.state import SessionState
from sessionmemd.store import Store


def main() -> None:
    for n in (1_000, 12_000, 20_000):
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "s.db")
            state = SessionState("s", 1)
            store.write([Batch.of(state.drain())])  # type: ignore[arg-type]
            for i in range(n):
                state.track_file(f"src/file{i}.py")
            started = time.perf_counter()
            store.write([Batch.of(state.drain())])  # type: ignore[arg-type]
            print(f"snapshot of {n:>6,} new files  {(time.perf_counter() - started) * 1000:8.0f} ms")
            store.close()


if __name__ == "__main__":
    main()
