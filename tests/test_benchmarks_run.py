"""The benchmark and soak scripts keep working (their figures are not checked here:
tests assert behaviour, never speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench  # noqa: E402


def test_benchmark_parts_measure_real_work(tmp_path: Path) -> None:
    snap = bench.snapshot_costs(tmp_path, 500)
    assert snap["firstMs"] > 0 and snap["afterOneChangeMs"] > 0
    rest = bench.restore_costs(tmp_path, 500)
    assert rest["restoreMs"] > 0 and rest["bareFetchMs"] > 0
    assert bench.dispatch_cost(n=2000)["dispatchUs"] > 0
    d = bench.sessionmemd(tmp_path, "b")
    try:
        assert bench.raw_sequential(d.sock, 200) > 0
        assert bench.raw_pipelined(d.sock, 1000) > 0
        assert bench.raw_pipelined(d.sock, 1000, batch=100) > 0
        ops, lat = bench.session_sequential(d.sock, 100)
        assert ops > 0 and len(lat) == 100
    finally:
        d.stop()


def test_soak_script_runs_clean(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    r = subprocess.run([sys.executable, str(BENCH / "soak.py"), "--clients", "6", "--processes", "2",
                        "--seconds", "3", "--clear-every", "1", "--max-growth", "1000", "--json", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    figures = json.loads(out.read_text())
    assert figures["errors"] == 0 and figures["ops"] > 0 and figures["daemonExit"] == 0


def test_feed_benchmark_parts_measure_real_work(tmp_path: Path) -> None:
    import feed_bench

    proc, sock = feed_bench.start_daemon(tmp_path)
    try:
        lat = feed_bench.latency(sock, tmp_path, 30)
        assert lat["feedP50Us"] != 0 and lat["rttP50Us"] > 0
        fan = feed_bench.fan_out(sock, tmp_path, proc.pid, 5, 1.0)
        assert fan["writesPerSec"] > 0 and fan["notificationsReceived"] > 0 and fan["rssMiB"]
    finally:
        proc.terminate()
        proc.wait(30)


def test_sessions_benchmark_parts_measure_real_work(tmp_path: Path) -> None:
    import sessions_bench

    m = sessions_bench.many_start(tmp_path, 50, 1)
    assert m["oneSessionStartS"] > 0 and m["manySessionsStartS"] > 0 and m["listSessionsMs"] > 0
    e = sessions_bench.export_import(tmp_path, 500)
    assert e["exportPerS"] > 0 and e["importPerS"] > 0
    i = sessions_bench.idle_memory(tmp_path, 20, 0.3)
    assert i["sessionsLoadedAfter"] == 1 and i["rssBeforeMiB"] > 0
    b = sessions_bench.big_start(tmp_path, 3000)
    assert b["bigFirstAnswerS"] > 0 and b["bigAllMessagesS"] >= b["bigFirstAnswerS"]
    g = sessions_bench.change_log_start(tmp_path, 300, 100, 1)
    assert g["logRows"] == 300 and g["fullLogStartS"] > 0 and g["emptyLogStartS"] > 0


def test_search_benchmark_runs_tiny() -> None:
    import search_bench

    f = search_bench.run(messages=2000, queries=4, writes=20)
    assert f["wordsP50Ms"] > 0 and f["likeScanP50Ms"] > 0 and f["buildIndexS"] > 0 and f["loadHistoryS"] > 0
    assert f["alwaysWithIndexPerS"] > 0 and f["alwaysWithoutIndexPerS"] > 0


def test_adk_benchmark_parts_measure_real_work(tmp_path: Path) -> None:
    import asyncio

    import pytest

    pytest.importorskip("google.adk", reason="needs the extra sessionmem[adk]")
    import adk_bench

    (tmp_path / "ours").mkdir()
    (tmp_path / "adk").mkdir()
    mine = asyncio.run(adk_bench.ours(tmp_path / "ours", 30))
    base = asyncio.run(adk_bench.adk_sqlite(tmp_path / "adk", 30))
    for f in (mine, base):  # work() itself checks both read back what was appended
        assert f["appendS"] > 0 and f["readAllS"] > 0 and f["readRecent10Ms"] > 0


def test_pg_start_benchmark_runs_tiny(pg_cluster: object, tmp_path: Path) -> None:
    """Its own throwaway cluster, a real `store copy`, both stores' daemons started."""
    out = tmp_path / "start.json"
    r = subprocess.run([sys.executable, str(BENCH / "pg_start_bench.py"), "--n", "2000", "--runs", "1",
                        "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    figures = json.loads(out.read_text())
    assert figures["messages"] == 2000 and figures["copyToS"] > 0
    assert figures["sqliteFirstAnswerS"] > 0 and figures["postgresqlFirstAnswerS"] > 0


def test_pg_start_benchmark_before_runs_tiny(pg_cluster: object, tmp_path: Path) -> None:
    """--before REV: REV's copy in a database of its own, both revisions' daemons on both copies."""
    out = tmp_path / "start.json"
    r = subprocess.run([sys.executable, str(BENCH / "pg_start_bench.py"), "--n", "500", "--runs", "1",
                        "--before", "HEAD", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    figures = json.loads(out.read_text())
    assert figures["before"] == "HEAD" and figures["beforeCopyToS"] > 0
    for name in ("postgresql", "beforeOnBeforeCopy", "afterOnBeforeCopy", "beforeOnAfterCopy"):
        assert figures[f"{name}FirstAnswerS"] > 0 and figures[f"{name}FirstAnswerRatio"] > 0, name


def test_pg_bench_runs_tiny(pg_cluster: object, tmp_path: Path) -> None:
    """Writes through both stores, 8 writers on 2 daemons of one key, the feed across them."""
    out = tmp_path / "pg.json"
    r = subprocess.run([sys.executable, str(BENCH / "pg_bench.py"), "--n", "80", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    figures = json.loads(out.read_text())
    assert figures["variant"] == "no fsync" and figures["postgresqlFsync"] == "off"
    assert figures["postgresql8WritersOn2DaemonsPerSec"] > 0 and figures["writers8On2DaemonsRatio"] > 0
    assert figures["feedSameDaemonP50Ms"] > 0 and figures["feedCrossDaemonP50Ms"] > 0


def test_pg_bench_durable_runs_tiny(pg_cluster: object, tmp_path: Path) -> None:
    """--durable: SQLite always + --fsync ÷ a cluster that flushes every commit (read back from it)."""
    out = tmp_path / "pg.json"
    r = subprocess.run([sys.executable, str(BENCH / "pg_bench.py"), "--n", "40", "--durable", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    figures = json.loads(out.read_text())
    assert figures["variant"] == "durable"
    assert figures["postgresqlFsync"] == "on" and figures["postgresqlSynchronousCommit"] == "on"
    assert figures["sqliteSequentialPerSec"] > 0 and figures["sequentialRatio"] > 0


def test_pg_bench_before_runs_tiny(pg_cluster: object, tmp_path: Path) -> None:
    """--before REV: REV's daemon (from git archive) and this tree's, each round, one cluster."""
    out = tmp_path / "pg.json"
    r = subprocess.run([sys.executable, str(BENCH / "pg_bench.py"), "--n", "40", "--before", "HEAD", "--rounds", "1",
                        "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    figures = json.loads(out.read_text())
    assert figures["before"] == "HEAD" and len(figures["rounds"]["before"]) == len(figures["rounds"]["after"]) == 1
    seq = figures["postgresqlSequentialPerSec"]
    assert seq["before"] > 0 and seq["after"] > 0 and seq["afterOverBefore"] > 0
    assert figures["postgresql8WritersOn2DaemonsPerSec"]["afterOverBefore"] > 0
    assert figures["writers8On2DaemonsRatio"]["before"] > 0 and figures["writers8On2DaemonsRatio"]["after"] > 0


def test_pg_migrate_benchmark_runs_tiny(pg_cluster: object, tmp_path: Path) -> None:
    """A schema-2 database migrated by a real daemon (and by HEAD's, --before), then searched."""
    out = tmp_path / "migrate.json"
    r = subprocess.run([sys.executable, str(BENCH / "pg_migrate_bench.py"), "--messages", "2000", "--runs", "1",
                        "--before", "HEAD", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    figures = json.loads(out.read_text())
    from sessionmemd.pgschema import SCHEMA_VERSION

    assert figures["schemaVersion"] == SCHEMA_VERSION and figures["hitsAgree"] is True and figures["hitsChecked"] > 0
    assert figures["migratingFirstAnswerS"] > 0 and figures["migratedFirstAnswerS"] > 0
    assert figures["beforeFirstAnswerS"] > 0


def test_pg_search_benchmark_runs_tiny(pg_cluster: object) -> None:
    r = subprocess.run([sys.executable, str(BENCH / "pg_search_bench.py"), "--messages", "2000", "--queries", "4",
                        "--vacuum", "--before", "HEAD"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ILIKE scan p50" in r.stdout and "now / before" in r.stdout


def test_search_profile_runs_tiny() -> None:
    r = subprocess.run([sys.executable, str(BENCH / "search_profile.py"), "--messages", "2000", "--options"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert sum(1 for x in lines if x.split()[:1] in (["5"], ["50"], ["500"], ["5000"])) >= 4
    assert any(x.startswith("detail=column") and "refused" in x for x in lines)  # no phrase mode there


def test_lease_end_bench_runs_tiny(pg_cluster: object, tmp_path: Path) -> None:
    """A lease ending by its connection closing and by its daemon killed, seen on another
    daemon; writes with ephemeral and ttl leases held."""
    out = tmp_path / "leases.json"
    r = subprocess.run([sys.executable, str(BENCH / "lease_end_bench.py"), "--rounds", "1", "--n", "40",
                        "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    figures = json.loads(out.read_text())
    assert figures["closeEndP50Ms"] > 0 and figures["killEndP50Ms"] > 0 and figures["killOverCloseP50"] > 0
    assert figures["writesWith20EphemeralLeasesPerSec"] > 0 and figures["ephemeralOverTtlWrites"] > 0
