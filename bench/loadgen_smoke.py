#!/usr/bin/python3
"""Smoke test of bench/loadgen against real bridges (issue 6).

Starts a throwaway cluster (as test/e2e does), then:
  1. one bridge, one loadgen with 2,000 connections over 4 source addresses;
     1,000 timestamped messages must all arrive with sane latencies, and the
     connections must survive the bridge's pings (loadgen answers them);
  2. three bridges (one bridge cannot hold 45,000 sockets under the 20,000
     open-file limit) and three loadgens of 15,000 connections each, spread
     over the three ports: every connection must open; then one broadcast_ws
     must reach all of them.
The bridge's connect rate falls as it holds more sockets (its poll() loop
costs O(sockets) per turn: ~1,500/s when empty, under 100/s per bridge near
15,000), so the big run keeps few upgrades in flight and gives the bridges a
longer auth_timeout: with 256 in flight per loadgen a fifth of the upgrades
waited past the 10 s default and were refused with 503, and with 32 one in
300 still was.
Prints what it measured. Needs `make` (bridge) and `make install` (extension)
first; builds loadgen itself.

Usage: /usr/bin/python3 bench/loadgen_smoke.py [--skip-big] [--big-per-proc 15000]
"""
import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "e2e"))
import psycopg  # noqa: E402
from conftest import SECRET, Bridge, Cluster, Database, add_template  # noqa: E402
from procstat import rss_kib, stop_proc  # noqa: E402

LOADGEN = os.path.join(HERE, "loadgen")


class Loadgen:
    """One loadgen process; its JSON lines are collected by a thread."""

    def __init__(self, args):
        self.proc = subprocess.Popen([LOADGEN, "--secret", SECRET, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.last_progress = None
        self.stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            msg = json.loads(line)
            if msg["type"] == "progress":
                self.last_progress = msg
            else:
                self.lines.put(msg)

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())

    def expect(self, kind, timeout):
        """The next non-progress line, which must be of this kind."""
        try:
            msg = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {kind} line within {timeout}s; last progress "
                                 f"{self.last_progress}; stderr {self.stderr[-5:]}")
        assert msg["type"] == kind, msg
        return msg

    def report(self, sig=signal.SIGUSR2):
        self.proc.send_signal(sig)
        return self.expect("report", 10)

    def stop(self):
        stop_proc(self.proc)


def start_bridge(db, *args):
    b = Bridge(db, ["--max-connections", "19000", "--max-connections-per-user", "100000",
                    "--log-level", "warn", *args])
    b.args.remove("-v")
    return b.start()


def wait_until(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def small(db):
    """2,000 connections, 1,000 timestamped messages, pings answered."""
    b = start_bridge(db, "--ping-interval", "1s", "--ping-timeout", "2s")
    lg = None
    try:
        lg = Loadgen(["--ports", str(b.port), "--conns", "2000", "--sources", "4",
                      "--source-base", "127.0.0.2", "--users", "2000", "--expect", "1000",
                      "--stats-interval", "200"])
        c = lg.expect("connected", 60)
        print(f"small: {c['connected']} connected, {c['failed']} failed, "
              f"{c['connects_per_s']:.0f} connects/s", flush=True)
        assert c["connected"] == 2000 and c["failed"] == 0, c
        lg.proc.send_signal(signal.SIGUSR1)
        lg.expect("phase_reset", 5)
        with psycopg.connect(db.cluster.dsn(db.name), autocommit=True) as conn:
            conn.execute("SELECT send_ws('u' || (k % 2000), jsonb_build_object('t', "
                         "(extract(epoch from clock_timestamp())*1e6)::bigint)) "
                         "FROM generate_series(1,1000) k")
        wait_until(lambda: lg.last_progress and lg.last_progress["received"] >= 1000, 30,
                   "1000 messages")
        r = lg.report()
        print(f"small: received {r['received']}, timed {r['timed']}, p50 {r['p50_us']} us, "
              f"p99 {r['p99_us']} us, max {r['max_us']} us, first {r['first_arrival_us']} us, "
              f"half {r['half_arrival_us']} us, last {r['last_arrival_us']} us", flush=True)
        assert r["received"] == 1000 and r["timed"] == 1000, r
        assert 0 < r["p50_us"] <= r["p99_us"] <= r["max_us"] < 10_000_000, r
        assert 0 <= r["first_arrival_us"] <= r["half_arrival_us"] <= r["last_arrival_us"], r

        # several ping rounds: every connection must still be there
        time.sleep(5)
        p = lg.last_progress
        m = b.metrics()
        print(f"small: after 5 s of 1 s pings: {p['connected']} open, {p['closed']} closed; "
              f"bridge says {m.get('wsnotify_connections', 0):.0f}; "
              f"loadgen RSS {rss_kib(lg.proc.pid)} KiB", flush=True)
        assert p["connected"] == 2000 and p["closed"] == 0, p

        lg.proc.send_signal(signal.SIGTERM)
        lg.expect("report", 10)
        assert lg.proc.wait(15) == 0
    finally:
        if lg:
            lg.stop()
        b.stop()


def big(db, per_proc, procs=3):
    """procs loadgens of per_proc connections each, over three bridges."""
    bridges = [start_bridge(db, "--heartbeat-interval", "10s", "--auth-timeout", "60s")
               for _ in range(3)]
    lgs = []
    try:
        ports = ",".join(str(b.port) for b in bridges)
        base_rss = [rss_kib(b.proc.pid) for b in bridges]
        t0 = time.time()
        for k in range(procs):
            lgs.append(Loadgen(["--ports", ports, "--conns", str(per_proc), "--sources", "4",
                                "--source-base", f"127.0.0.{10 + 4 * k}", "--users", str(per_proc),
                                "--user-offset", str(k * per_proc), "--user-prefix", "b",
                                "--concurrency", "16", "--expect", str(per_proc),
                                "--stats-interval", "1000"]))
        cs = [lg.expect("connected", 900) for lg in lgs]
        dt = time.time() - t0
        refused = {}
        for b in bridges:
            for k, v in b.metrics().items():
                if k.startswith("wsnotify_auth_failures_total") and v:
                    refused[k[len("wsnotify_auth_failures_total"):]] = v
        print(f"big: bridges refused {refused or 'nothing'}", flush=True)
        total = sum(c["connected"] for c in cs)
        for c in cs:
            print(f"big: {c['connected']} connected, {c['failed']} failed {c['fail_codes']}, "
                  f"{c['connects_per_s']:.0f} connects/s", flush=True)
        time.sleep(2)
        open_now = sum(lg.last_progress["connected"] for lg in lgs)
        held = [b.metrics().get("wsnotify_connections", 0) for b in bridges]
        rows = db.sql("SELECT count(*) FROM websocket_client")[0][0]
        rss = [rss_kib(b.proc.pid) - r for b, r in zip(bridges, base_rss)]
        print(f"big: {total} connected in {dt:.1f} s ({total / dt:.0f}/s overall); "
              f"{open_now} still open; bridges hold {held}, websocket_client rows {rows}; "
              f"bridge RSS growth {rss} KiB "
              f"({sum(rss) * 1024 / max(total, 1):.0f} B/conn); "
              f"loadgen RSS {[rss_kib(lg.proc.pid) for lg in lgs]} KiB", flush=True)
        assert total == procs * per_proc, cs
        assert open_now == total

        for lg in lgs:
            lg.proc.send_signal(signal.SIGUSR1)
            lg.expect("phase_reset", 5)
        db.sql("SELECT broadcast_ws(jsonb_build_object('t', "
               "(extract(epoch from clock_timestamp())*1e6)::bigint))")
        wait_until(lambda: all(lg.last_progress["received"] >= per_proc for lg in lgs), 120,
                   "the broadcast to reach every connection")
        for lg in lgs:
            r = lg.report()
            print(f"big: broadcast: {r['received']} received, first {r['first_arrival_us']} us, "
                  f"half {r['half_arrival_us']} us, all {r['last_arrival_us']} us, "
                  f"p50 {r['p50_us']} us, p99 {r['p99_us']} us", flush=True)
            assert r["received"] == per_proc == r["timed"], r
    finally:
        for lg in lgs:
            lg.stop()
        for b in bridges:
            b.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--big-per-proc", type=int, default=15000)
    args = ap.parse_args()
    subprocess.run(["make", "-s", "-C", HERE, "loadgen"], check=True)
    cluster = Cluster()
    cluster.init()
    try:
        add_template(cluster)
        small(Database(cluster))
        if not args.skip_big:
            big(Database(cluster), args.big_per_proc)
        print("ok")
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
