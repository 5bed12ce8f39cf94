#!/usr/bin/env python3
"""Commit-to-arrival latency of bridge binaries, alternating in one session.

Runs bench/run.py's per-user phase (one cluster, one loadgen fleet of
--users connections, pgbench at fixed rates) for each binary in turn, --reps
times, and prints p50/p99 with how the bridge got the messages (from NOTIFY
payloads or fetched, from its /metrics).

  ulimit -n 20000
  /usr/bin/python3 bench/latency_ab.py --bridges /tmp/bridge-old,bridge/wsnotify-bridge \\
      --users 10000 --rates 500,2000,5000 --reps 2
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bridges", required=True, help="comma-separated bridge binaries")
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--rates", default="500,2000,5000")
    ap.add_argument("--seconds", type=int, default=8, help="per rate")
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    env = run.Env()
    try:
        for _ in range(args.reps):
            for path in args.bridges.split(","):
                run.BRIDGE = path
                r = run.per_user(env, run.WsnotifySystem(env), args.users, rates,
                                 args.seconds, 2)
                for rate in rates:
                    v = r[f"rate_{rate}"]
                    print(f"{path} {rate}/s: p50 {v['p50_ms']:.3f} ms, p99 {v['p99_ms']:.3f} ms, "
                          f"{v['server_counters']}", flush=True)
    finally:
        env.destroy()


if __name__ == "__main__":
    main()
