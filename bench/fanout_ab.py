#!/usr/bin/python3
"""A/B of wsnotify-bridge binaries on bench/run.py's fan-out: the same cluster,
loadgen fleet, statements and CPU meter as run.py's fan-out phase, with the
binaries alternating (A B A B ...) so that the shared machine's load falls on
both alike.  Each turn starts a fresh bridge, connects N loadgen connections,
subscribes them to the topic and times `rounds` messages of each kind.

Usage: ulimit -n 20000; /usr/bin/python3 bench/fanout_ab.py --bridges A,B
           [--counts 1000,19000] [--rounds 20] [--reps 3] [--kinds topic,broadcast]
           [--perf DIR]     # perf record -g of each turn's rounds: DIR/<label>-<N>-<kind>-<rep>.data
Prints a Markdown table: deliveries per bridge CPU-second (schedstat) per turn,
and the median per binary.
"""
import argparse
import os
import statistics
import sys

import run  # bench/run.py
from procstat import perf_record


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bridges", required=True, help="comma-separated bridge binaries")
    ap.add_argument("--counts", default="1000,19000")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--kinds", default="topic,broadcast")
    ap.add_argument("--perf", metavar="DIR")
    args = ap.parse_args()
    bridges = args.bridges.split(",")
    kinds = tuple(args.kinds.split(","))
    labels = [chr(ord('A') + i) for i in range(len(bridges))]
    env = run.Env()
    system = run.WsnotifySystem(env)
    rows = []       # (n, kind, label, rep, deliveries per CPU-s)
    try:
        for n in [int(x) for x in args.counts.split(",")]:
            for rep in range(args.reps):
                for label, path in zip(labels, bridges):
                    run.BRIDGE = path   # WsnotifySystem.popen reads it at each start

                    def around(pids, kind, label=label, rep=rep, n=n):
                        if not args.perf:
                            return None
                        return perf_record(pids[0], os.path.join(
                            args.perf, f"{label}-{n}-{kind}-{rep}.data"))

                    out = run.fanout(env, system, n, args.rounds, kinds, around)
                    for kind in kinds:
                        v = out[kind]["deliveries_per_cpu_s"] or 0
                        rows.append((n, kind, label, rep, v))
                        run.log(f"  {label} {kind} x{n} rep {rep}: {v:.0f} per CPU-s "
                                f"({out[kind]['complete_rounds']}/{args.rounds} complete)")
    finally:
        system.stop() if system.procs else None
        env.destroy()
    for label, path in zip(labels, bridges):
        print(f"{label}: {path}")
    print("\n| subscribers | kind | " + " | ".join(labels) + " | " +
          " / ".join(labels[1:]) + f" ÷ {labels[0]} (medians) |")
    print("|---:|---|" + "---|" * len(labels) + "---:|")
    for n in sorted({r[0] for r in rows}):
        for kind in kinds:
            cells, meds = [], []
            for label in labels:
                vals = [r[4] for r in rows if r[:3] == (n, kind, label)]
                meds.append(statistics.median(vals))
                cells.append(" / ".join(f"{v:,.0f}" for v in vals) + f" (median {meds[-1]:,.0f})")
            ratio = ", ".join(f"{m / meds[0]:.2f}" for m in meds[1:])
            print(f"| {n:,} | {kind} | " + " | ".join(cells) + f" | {ratio} |")


if __name__ == "__main__":
    sys.exit(main())
