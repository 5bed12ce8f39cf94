#!/usr/bin/python3
"""Per-event cost of one bridge as it holds more sockets (docs/benchmarks.md,
"Event loop").

Starts a throwaway cluster (as test/e2e does) and one bridge
(--max-connections 20000 --max-connections-per-user 0), then:
  1. one loadgen opens 10,000 connections (--concurrency 64), a second one
     5,000 more; the connect rate and the bridge's CPU per connect are taken
     over the 1,000 connects around 1,000, 5,000 and (the last 1,000 before)
     15,000 held connections;
  2. with 10,000 held, three broadcast_ws calls: the bridge's CPU per
     delivered message (its CPU during the broadcast, less what it spends idle
     over the same time).
The bridge's CPU is read from /proc/PID/schedstat (nanoseconds on a CPU),
which wall-clock noise from other work on the machine does not inflate.

Usage: /usr/bin/python3 bench/evloop.py [--bridge PATH] [--label NAME]
Needs `make` (bridge) and the extension installed; builds loadgen itself.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument("--bridge", help="the wsnotify-bridge binary (default: the worktree's)")
ap.add_argument("--label", default="")
ap.add_argument("--first", type=int, default=10000)
ap.add_argument("--second", type=int, default=5000)
args = ap.parse_args()
if args.bridge:
    os.environ["WSNOTIFY_BRIDGE"] = os.path.abspath(args.bridge)
sys.path.insert(0, os.path.join(HERE, "..", "test", "e2e"))
from conftest import SECRET, Bridge, Cluster, Database, add_template  # noqa: E402
from procstat import stop_proc  # noqa: E402

LOADGEN = os.path.join(HERE, "loadgen")


def cpu_ns(pid):
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


class Loadgen:
    """One loadgen; each progress line is recorded with the bridge's CPU."""

    def __init__(self, bridge_pid, lgargs, samples):
        self.proc = subprocess.Popen([LOADGEN, "--secret", SECRET, *lgargs],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.bridge_pid = bridge_pid
        self.samples = samples
        self.last = {"connected": 0, "received": 0}
        self.done = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            msg = json.loads(line)
            if msg["type"] == "progress":
                self.last = msg
                self.samples.append((time.time(), self, msg["connected"],
                                     cpu_ns(self.bridge_pid), time.monotonic()))
            elif msg["type"] == "connected":
                self.connected = msg
                self.done.set()

    def stop(self):
        stop_proc(self.proc)


def window(samples, lo, hi, offset):
    """(connects/s, CPU us per connect) between offset+lo and offset+hi held."""
    a = next((s for s in samples if s[2] + offset >= lo), None)
    b = next((s for s in samples if s[2] + offset >= hi), None)
    if not a or not b or b[0] <= a[0]:
        return None
    n = b[2] - a[2]
    # the monotonic bounds are for perf report --time (perf record -k CLOCK_MONOTONIC)
    return n / (b[0] - a[0]), (b[3] - a[3]) / 1000.0 / n, a[4], b[4]


def main():
    subprocess.run(["make", "-s", "-C", HERE, "loadgen"], check=True)
    cluster = Cluster()
    cluster.init()
    lgs = []
    b = None
    try:
        add_template(cluster)
        db = Database(cluster)
        b = Bridge(db, ["--max-connections", "20000", "--max-connections-per-user", "0",
                        "--log-level", "warn", "--auth-timeout", "60s",
                        "--heartbeat-interval", "10s"])
        b.args.remove("-v")
        b.start()
        pid = b.proc.pid
        s1, s2 = [], []
        common = ["--ports", str(b.port), "--concurrency", "64", "--sources", "4",
                  "--stats-interval", "100"]
        lg = Loadgen(pid, common + ["--conns", str(args.first), "--source-base", "127.0.0.2",
                                    "--users", str(args.first)], s1)
        lgs.append(lg)
        assert lg.done.wait(900), lg.last
        c1 = lg.connected
        out = {"label": args.label, "connect": {}, "first": c1}
        for n in (1000, 5000):
            w = window(s1, n - 500, n + 500, 0)
            if w:
                out["connect"][n] = w
        time.sleep(3)

        # broadcasts to the first loadgen's connections
        per_msg = []
        bt0 = time.monotonic()
        for k in range(3):
            t0, c0 = time.time(), cpu_ns(pid)
            time.sleep(2)
            idle_ns_per_s = (cpu_ns(pid) - c0) / (time.time() - t0)
            lg.proc.send_signal(signal.SIGUSR1)
            time.sleep(0.5)
            base = lg.last["received"]
            t0, c0 = time.time(), cpu_ns(pid)
            db.sql("SELECT broadcast_ws(jsonb_build_object('t', "
                   "(extract(epoch from clock_timestamp())*1e6)::bigint))")
            deadline = time.time() + 120
            while lg.last["received"] < base + args.first and time.time() < deadline:
                time.sleep(0.02)
            t1, c1_ = time.time(), cpu_ns(pid)
            got = lg.last["received"] - base
            busy = (c1_ - c0) - idle_ns_per_s * (t1 - t0)
            per_msg.append({"received": got, "secs": t1 - t0, "cpu_ms": (c1_ - c0) / 1e6,
                            "idle_cpu_ms_per_s": idle_ns_per_s / 1e6,
                            "us_per_msg": busy / 1000.0 / max(got, 1)})
        out["broadcast"] = per_msg
        out["broadcast_monotonic"] = [bt0, time.monotonic()]  # for perf report --time

        lg2 = Loadgen(pid, common + ["--conns", str(args.second), "--source-base", "127.0.0.10",
                                     "--users", str(args.second), "--user-offset",
                                     str(args.first), "--user-prefix", "s"], s2)
        lgs.append(lg2)
        assert lg2.done.wait(900), lg2.last
        out["second"] = lg2.connected
        deadline = time.time() + 5     # the progress line that counts the last one
        while lg2.last["connected"] < args.second and time.time() < deadline:
            time.sleep(0.05)
        total = args.first + args.second
        w = window(s2, total - 1000, total, args.first)
        if w:
            out["connect"][total] = w
        out["bridge_connections"] = b.metrics().get("wsnotify_connections")
        print(json.dumps(out), flush=True)
        for n, (rate, cpu, _, _) in sorted(out["connect"].items()):
            print(f"{args.label}: at {n} held: {rate:.0f} connects/s, "
                  f"{cpu:.0f} us bridge CPU per connect", flush=True)
        for m in per_msg:
            print(f"{args.label}: broadcast to {m['received']}: {m['secs']*1000:.0f} ms, "
                  f"bridge {m['cpu_ms']:.1f} ms CPU (idle {m['idle_cpu_ms_per_s']:.1f} ms/s), "
                  f"{m['us_per_msg']:.2f} us per message", flush=True)
    finally:
        for lg in lgs:
            lg.stop()
        if b:
            b.stop()
        cluster.destroy()


if __name__ == "__main__":
    main()
