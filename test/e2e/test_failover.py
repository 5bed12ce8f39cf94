"""Failover to a streaming standby (pg_basebackup -R), promoted after the
primary stops (fast, and immediate).  Bridges and senders are given a
multi-host DSN (host=a,b target_session_attrs=read-write) and follow it;
client sockets stay open; with synchronous replication every message
committed before and after is delivered once, in order, to plain and
wsnotify.v1 clients (faultkit's ledger).
"""
import os

import pytest

from conftest import PGBIN, Bridge, Cluster, Database, add_template, run, wait_for
from faultkit import Scenario
from test_faults import USERS, assert_sockets_stayed_open, clients_on


class Pair:
    """A primary and a streaming standby of it, both throwaway, both with
    wsnotify preloaded; dsn() names both hosts, read-write first found."""

    def __init__(self, synchronous):
        self.primary = Cluster()
        self.primary.init()
        with open(os.path.join(self.primary.data, "postgresql.conf"), "a") as f:
            f.write("wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\n")
            if synchronous:
                f.write("synchronous_standby_names = '*'\n")
        with open(os.path.join(self.primary.data, "pg_hba.conf"), "a") as f:
            f.write("host replication all 127.0.0.1/32 trust\n")
        self.primary.restart()
        add_template(self.primary)
        self.standby = Cluster()
        self.standby.run(os.path.join(PGBIN, "pg_basebackup"), "-h", "127.0.0.1", "-p",
                         str(self.primary.port), "-U", "postgres", "-D", self.standby.data,
                         "-R", "-X", "stream", "-c", "fast", "--no-sync")
        with open(os.path.join(self.standby.data, "postgresql.conf"), "a") as f:
            # promoted, it has no standby of its own to wait for
            f.write(f"port = {self.standby.port}\n"
                    f"unix_socket_directories = '{self.standby.dir}'\n"
                    "synchronous_standby_names = ''\n")
        self.standby.start()
        # the standby's walreceiver has connected (synchronous commits would wait otherwise)
        wait_for(lambda: self.primary_sql("SELECT count(*) FROM pg_stat_replication "
                                          "WHERE state = 'streaming'")[0][0] == 1,
                 timeout=20, what="the standby streaming")
        self.port = self.primary.port
        self.data = self.primary.data

    def primary_sql(self, q):
        import psycopg
        with psycopg.connect(self.primary.dsn("postgres"), autocommit=True) as c:
            return c.execute(q).fetchall()

    def dsn(self, db, user="postgres"):
        return (f"host=127.0.0.1,127.0.0.1 port={self.primary.port},{self.standby.port} "
                f"dbname={db} user={user} target_session_attrs=read-write")

    def fail_over(self, mode):
        """Stop the primary (fast or immediate), then promote the standby."""
        self.primary.stop(mode)
        self.standby.run(os.path.join(PGBIN, "pg_ctl"), "-D", self.standby.data, "-w", "promote")

    def destroy(self):
        self.standby.destroy()
        self.primary.destroy()


@pytest.fixture
def sync_pair():
    p = Pair(synchronous=True)
    yield p
    p.destroy()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_promoted_synchronous_standby_takes_over_and_nothing_is_lost(sync_pair, tmp_path, mode):
    os.chmod(tmp_path, 0o755)
    d = Database(sync_pair)
    b = Bridge(d, tmp=str(tmp_path)).start()
    try:
        clients = clients_on(b)
        sc = Scenario(d, clients, USERS, total=3000)
        report = run(sc.run(lambda: sync_pair.fail_over(mode), timeout=60), timeout=150)
        print("\n", report)
        assert sc.client_errors == []
        assert sc.ledger() == {}, "missing/duplicated/out-of-order messages at the clients"
        assert report["committed"] >= 0.9 * 3000
        assert_sockets_stayed_open(clients)
        assert b.healthz()[0] == 200
        assert b.metrics()["wsnotify_db_reconnects_total"] >= 1
    finally:
        b.stop()
