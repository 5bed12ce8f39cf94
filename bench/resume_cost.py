#!/usr/bin/python3
"""What resume (wsnotify.v1) costs, measured (issue 4's closing note).

Starts a throwaway cluster and one bridge (the test/e2e fixtures: fsync off,
synchronous_commit off), then:
  1. delivery to plain clients vs wsnotify.v1 clients: N messages to U users
     with C sockets each, sent by 4 sessions in 1-message transactions and
     then in 1000-message transactions; send_ws throughput (messages
     committed per second) and the bridge's CPU seconds (utime + stime from
     /proc/PID/stat) from the first send until every socket has everything;
  2. catch-up: a v1 client misses K messages (sent in 1000-message
     transactions while it is away), then reconnects with ?since=; the time
     from the connect call to its K-th message, vs a connect without since.

Usage: /usr/bin/python3 bench/resume_cost.py [--messages 20000] [--users 50]
       [--sockets 2] [--catchup 1000,10000,100000] [--repeat 3]
Prints Markdown tables (medians of --repeat runs).
"""
import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "e2e"))
import psycopg  # noqa: E402
import websockets  # noqa: E402
from conftest import Bridge, Cluster, Database, add_template, token  # noqa: E402
from procstat import stat_cpu_seconds  # noqa: E402

def send(db, users, total, per_tx, sessions=4):
    """Commit `total` messages round-robin over users; return elapsed seconds."""
    def worker(k):
        with psycopg.connect(db.cluster.dsn(db.name), autocommit=True) as conn:
            if per_tx == 1:
                for j in range(k, total, sessions):
                    conn.execute("SELECT send_ws(%s, '{\"n\": 1}')", (users[j % len(users)],))
            else:
                for j in range(k * per_tx, total, sessions * per_tx):
                    conn.execute("SELECT send_ws((%s::text[])[1 + k %% %s::int], '{\"n\": 1}') "
                                 "FROM generate_series(%s::int, %s::int) AS k",
                                 (users, len(users), j, j + per_tx - 1))
    errors = []

    def guarded(k):
        try:
            worker(k)
        except Exception as e:
            errors.append(e)
    t0 = time.time()
    ts = [threading.Thread(target=guarded, args=(k,)) for k in range(sessions)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return time.time() - t0


async def open_clients(b, users, sockets, v1):
    kw = {"subprotocols": ["wsnotify.v1"]} if v1 else {}
    out = []
    for u in users:
        for _ in range(sockets):
            out.append((u, await websockets.connect(b.ws_url(token(u)), ping_interval=None,
                                                    max_size=None, max_queue=None, **kw)))
    return out


async def drain(ws, n):
    for _ in range(n):
        await ws.recv()


def delivery(b, db, users, sockets, total, per_tx, v1):
    """(send_ws messages/s, bridge CPU seconds, seconds until all delivered)."""
    async def go():
        socks = await open_clients(b, users, sockets, v1)
        per_user = total // len(users)
        f0 = b.metrics()["wsnotify_fetches_total"]
        c0, t0 = stat_cpu_seconds(b.proc.pid), time.time()
        loop = asyncio.get_running_loop()
        sender = loop.run_in_executor(None, send, db, users, total, per_tx)
        await asyncio.wait_for(asyncio.gather(*(drain(ws, per_user) for _, ws in socks),
                                              sender), 600)
        t_send = sender.result()
        dt, cpu = time.time() - t0, stat_cpu_seconds(b.proc.pid) - c0
        fetches = b.metrics()["wsnotify_fetches_total"] - f0
        for _, ws in socks:
            await ws.close()
        print(f"  run: {per_tx} msg/tx v1={v1}: {total / t_send:.0f} msg/s, CPU {cpu:.2f} s, "
              f"{fetches:.0f} fetches, delivered in {dt:.2f} s", file=sys.stderr, flush=True)
        return total / t_send, cpu, dt, fetches
    return asyncio.run(go())


def catchup(b, db, k):
    """(seconds to connect with ?since and receive k missed messages, seconds for a
    plain connect)."""
    async def go():
        url = b.ws_url(token("away"))
        ws = await websockets.connect(url, subprotocols=["wsnotify.v1"], ping_interval=None)
        db.sql("SELECT send_ws('away', '{\"first\": 1}')")
        cursor = json.loads(await ws.recv())["id"]
        await ws.close()
        for j in range(0, k, 1000):
            db.sql("SELECT send_ws('away', jsonb_build_object('n', n)) "
                   "FROM generate_series(%s::int, %s::int) AS n", j, min(k, j + 1000) - 1)
        t0 = time.time()
        ws = await websockets.connect(url + f"&since={cursor}", subprotocols=["wsnotify.v1"],
                                      ping_interval=None, max_size=None, max_queue=None)
        await asyncio.wait_for(drain(ws, k - 1), 600)
        last = json.loads(await asyncio.wait_for(ws.recv(), 60))
        dt = time.time() - t0
        assert last["data"] == {"n": k - 1}, last   # the K-th missed message, in order
        await ws.close()
        t0 = time.time()
        ws = await websockets.connect(url, subprotocols=["wsnotify.v1"], ping_interval=None)
        plain = time.time() - t0
        await ws.close()
        return dt, plain
    return asyncio.run(go())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--sockets", type=int, default=2)
    ap.add_argument("--catchup", default="1000,10000,100000")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))   # still stop what we started
    cluster = Cluster()
    cluster.init()
    try:
        add_template(cluster)
        db = Database(cluster)
        b = Bridge(db, ["--ping-interval", "0"]).start()
        try:
            users = [f"user{i}" for i in range(a.users)]
            frames = a.messages // a.users * a.users * a.sockets
            print(f"{a.messages} messages to {a.users} users x {a.sockets} sockets "
                  f"= {frames} frames; medians of {a.repeat} runs\n")
            print("| transactions | clients | send_ws msg/s | bridge CPU s | CPU µs/frame "
                  "| bridge fetches | all delivered in s |")
            print("|---|---|---|---|---|---|---|")
            for per_tx in (1, 1000):
                for v1 in (False, True):
                    runs = [delivery(b, db, users, a.sockets, a.messages, per_tx, v1)
                            for _ in range(a.repeat)]
                    rate, cpu, dt, fetches = (statistics.median(x) for x in zip(*runs))
                    print(f"| {per_tx} msg/tx | {'wsnotify.v1' if v1 else 'plain'} "
                          f"| {rate:,.0f} | {cpu:.2f} | {cpu / frames * 1e6:.1f} "
                          f"| {fetches:,.0f} | {dt:.2f} |", flush=True)
            print("\n| missed messages K | resume (?since) until the K-th message, s "
                  "| connect without since, s |")
            print("|---|---|---|")
            for k in (int(x) for x in a.catchup.split(",")):
                runs = [catchup(b, db, k) for _ in range(a.repeat)]
                for dt, plain in runs:
                    print(f"  run: catch-up {k}: {dt:.3f} s", file=sys.stderr, flush=True)
                dt, plain = (statistics.median(x) for x in zip(*runs))
                print(f"| {k:,} | {dt:.3f} | {plain:.4f} |")
        finally:
            b.stop()
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
