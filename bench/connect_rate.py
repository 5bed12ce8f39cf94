#!/usr/bin/python3
"""Connect storm against one bridge (issue 6): new authenticated WebSocket
connections per second, and the CPU each connect costs the bridge and
PostgreSQL.

Starts a throwaway cluster (as test/e2e does: fsync and synchronous_commit
off unless --durable), then for each run a fresh bridge; the client (bench/loadgen,
or any program with its flags that prints a {"type":"connected",...,
"connects_per_s":...} line) opens --conns connections, --concurrency at a
time, and holds them.  CPU comes from utime+stime in /proc/PID/stat of the
bridge and of every PostgreSQL process (postmaster and its children), taken
before the storm and when the client reports; the machine is shared, so the
CPU per connect is the steadier number, the rate the noisier one.

Usage:
  make -C bench loadgen
  /usr/bin/python3 bench/connect_rate.py --client bench/loadgen [--conns 10000]
      [--concurrency 256] [--runs 3] [--durable] [--bridge-args "--db-pipeline-depth 1"]
WSNOTIFY_BRIDGE=/path/to/wsnotify-bridge picks another bridge binary.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "e2e"))
from conftest import BRIDGE, Bridge, Cluster, Database, SECRET, add_template  # noqa: E402
from procstat import postgres_pids, stat_cpu_seconds  # noqa: E402

def one_run(args, db):
    b = Bridge(db, ["--max-connections", str(args.conns + 1000), "--log-level", "warn",
                    "--heartbeat-interval", "10s", "--max-connections-per-user", "0",
                    *args.bridge_args.split()])
    b.args.remove("-v")
    b.start()
    try:
        time.sleep(0.5)
        pg0 = {p: stat_cpu_seconds(p) for p in postgres_pids(db.cluster)}
        br0 = stat_cpu_seconds(b.proc.pid)
        client = subprocess.Popen([args.client, "--conns", str(args.conns), "--concurrency",
                                   str(args.concurrency), "--sources", "8", "--source-base", "127.0.0.2", "--secret", SECRET,
                                   "--users", str(args.users), "--ports", str(b.port)],
                                  stdout=subprocess.PIPE, text=True)
        line = None
        for text in client.stdout:
            if '"type":"connected"' in text:
                line = json.loads(text)
                break
        br1 = stat_cpu_seconds(b.proc.pid)
        pg1 = {p: stat_cpu_seconds(p) for p in postgres_pids(db.cluster)}
        client.terminate()
        client.wait()
        pg = sum(v - pg0.get(p, 0.0) for p, v in pg1.items())
        return {"connects_per_s": round(line["connects_per_s"]),
                "connected": line.get("connected"), "failed": line.get("failed"),
                "bridge_us_per_connect": round((br1 - br0) * 1e6 / args.conns),
                "postgres_us_per_connect": round(pg * 1e6 / args.conns)}
    finally:
        b.stop()
        db.sql("DELETE FROM websocket_client")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "loadgen"))
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--durable", action="store_true",
                    help="fsync = on, synchronous_commit = on (the server's defaults)")
    ap.add_argument("--bridge-args", default="")
    args = ap.parse_args()
    cluster = Cluster()
    cluster.init()
    try:
        if args.durable:
            with open(os.path.join(cluster.data, "postgresql.conf"), "a") as f:
                f.write("fsync = on\nsynchronous_commit = on\n")
            cluster.restart()
        add_template(cluster)
        db = Database(cluster)
        print(f"# bridge {BRIDGE}, {args.conns} connections, concurrency {args.concurrency}, "
              f"{'durable' if args.durable else 'fsync off'}, bridge args {args.bridge_args!r}",
              flush=True)
        runs = []
        for _ in range(args.runs):
            r = one_run(args, db)
            print(json.dumps(r), flush=True)
            runs.append(r)
        print(json.dumps({"median": {k: statistics.median(r[k] for r in runs)
                                     for k in ("connects_per_s", "bridge_us_per_connect",
                                               "postgres_us_per_connect")}}), flush=True)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
