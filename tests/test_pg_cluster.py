"""The throwaway PostgreSQL cluster the store tests run against (issue 17): Debian's
server, started as a non-root user, reached only through its own Unix socket."""

from __future__ import annotations

import os
import stat
from typing import Any


def test_the_cluster_serves_a_database_of_the_tests_own_over_its_socket_only(pg_cluster: Any, pg_url: str) -> None:
    db = pg_url.split("///", 1)[1].split("?", 1)[0]
    assert pg_cluster.psql("SELECT current_database()", db) == db
    assert pg_cluster.psql("SHOW listen_addresses") == ""  # no TCP port
    assert pg_cluster.psql("SELECT current_setting('is_superuser')") == "on"
    # The server runs as a user other than root, and its folder is its own.
    owner = os.stat(pg_cluster.data).st_uid
    assert owner != 0 or os.getuid() != 0
    assert stat.S_IMODE(os.stat(pg_cluster.base).st_mode) == 0o700
    pg_cluster.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)", db)
    assert pg_cluster.psql("SELECT sum(x) FROM t", db) == "3"


def test_the_durable_cluster_flushes_every_commit_the_tests_one_does_not(pg_cluster: Any) -> None:
    from pgcluster import Cluster

    assert (pg_cluster.psql("SHOW fsync"), pg_cluster.psql("SHOW synchronous_commit")) == ("off", "on")
    durable = Cluster(durable=True)  # benchmarks' production comparison (pg_bench.py --durable)
    durable.start()
    try:
        assert (durable.psql("SHOW fsync"), durable.psql("SHOW synchronous_commit")) == ("on", "on")
    finally:
        durable.destroy()


def test_a_restarted_cluster_keeps_what_was_committed(pg_cluster: Any, pg_url: str) -> None:
    db = pg_url.split("///", 1)[1].split("?", 1)[0]
    pg_cluster.psql("CREATE TABLE kept (x text); INSERT INTO kept VALUES ('before')", db)
    pg_cluster.restart()
    assert pg_cluster.psql("SELECT x FROM kept", db) == "before"
