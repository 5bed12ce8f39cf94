#!/usr/bin/python3
"""Quick numbers for wsnotify-bridge (issue 3's closing note).

Starts a throwaway cluster (as in test/e2e) and one bridge, then measures:
  1. connections accepted per second, each with its wsnotify_connect round trip;
  2. messages delivered per second with one message per transaction and with
     1000 messages per transaction;
  3. the bridge's resident memory per idle connection at N connections
     (clients spread over several processes, source addresses 127.0.0.x).

Usage: /usr/bin/python3 bench/bridge_quick.py [--idle 10000] [--procs 4] [--only idle]
"""
import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "e2e"))
import psycopg  # noqa: E402
import websockets  # noqa: E402
from conftest import Bridge, Cluster, Database, add_template, token  # noqa: E402
from procstat import rss_kib  # noqa: E402


async def open_many(url_of, n, concurrency, local_addr=None):
    """Open n connections, at most `concurrency` at a time; return them."""
    sem = asyncio.Semaphore(concurrency)
    out = []

    async def one(i):
        async with sem:
            kw = {"local_addr": (local_addr, 0)} if local_addr else {}
            out.append(await websockets.connect(url_of(i), ping_interval=None, max_size=None,
                                                open_timeout=60, **kw))
    await asyncio.gather(*(one(i) for i in range(n)))
    return out


def bench_connect_rate(b, n=2000, concurrency=64):
    toks = [token(f"u{i}") for i in range(n)]

    async def go():
        t0 = time.time()
        socks = await open_many(lambda i: b.ws_url(toks[i]), n, concurrency)
        dt = time.time() - t0
        await asyncio.gather(*(s.close() for s in socks))
        return n / dt
    return asyncio.run(go())


def bench_delivery(b, db, users=50, single=5000, big_tx=20, per_tx=1000, senders=4):
    toks = [token(f"d{i}") for i in range(users)]
    results = {}

    async def receive(socks, expect):
        async def drain(s):
            for _ in range(expect):
                await s.recv()
        await asyncio.gather(*(drain(s) for s in socks))

    def send_single():
        def worker(k):
            with psycopg.connect(db.cluster.dsn(db.name), autocommit=True) as conn:
                for j in range(k, single, senders):
                    conn.execute("SELECT send_ws(%s, '{\"n\": 1}')", (f"d{j % users}",))
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(senders)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    def send_big():
        with psycopg.connect(db.cluster.dsn(db.name)) as conn:
            for _ in range(big_tx):
                conn.execute("SELECT send_ws('d' || (g %% %s), '{\"n\": 1}') "
                             "FROM generate_series(1, %s) g", (users, per_tx))
                conn.commit()

    async def run(sender, expect):
        socks = await open_many(lambda i: b.ws_url(toks[i]), users, 32)
        t0 = time.time()
        th = threading.Thread(target=sender)
        th.start()
        await receive(socks, expect)
        dt = time.time() - t0
        th.join()
        await asyncio.gather(*(s.close() for s in socks))
        return expect * users / dt

    results["single"] = asyncio.run(run(send_single, single // users))
    print(f"messages/s delivered, 1-message transactions:    {results['single']:.0f}", flush=True)
    results["tx1000"] = asyncio.run(run(send_big, big_tx * per_tx // users))
    print(f"messages/s delivered, 1000-message transactions: {results['tx1000']:.0f}", flush=True)
    return results


def idle_client(url, n, addr, ready, stop):
    async def go():
        toks = [token(f"idle-{addr}-{i}") for i in range(n)]
        socks = await open_many(lambda i: f"{url}?token={toks[i]}", n, 64, addr)
        ready.put(len(socks))
        while stop.empty():
            await asyncio.sleep(0.2)
        for s in socks:
            s.transport.abort()
    asyncio.run(go())


def bench_idle(b, total, procs):
    base = rss_kib(b.proc.pid)
    ready, stop = mp.Queue(), mp.Queue()
    per = total // procs
    ps = [mp.Process(target=idle_client,
                     args=(f"ws://127.0.0.1:{b.port}/", per, f"127.0.0.{k + 2}", ready, stop))
          for k in range(procs)]
    t0 = time.time()
    for p in ps:
        p.start()
    opened = sum(ready.get(timeout=600) for _ in ps)
    dt = time.time() - t0
    time.sleep(1)
    after = rss_kib(b.proc.pid)
    m = b.metrics()
    for _ in ps:
        stop.put(1)
    for p in ps:
        p.join(60)
    return opened, base, after, (after - base) * 1024 / max(opened, 1), dt, m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--only", choices=("connect", "delivery", "idle"),
                    help="run one of the three measurements")
    args = ap.parse_args()
    cluster = Cluster()
    cluster.init()
    try:
        add_template(cluster)
        db = Database(cluster)
        b = Bridge(db, ["--max-connections", "30000", "--log-level", "warn",
                        "--heartbeat-interval", "10s"])
        b.args.remove("-v")
        b.start()
        try:
            if args.only in (None, "connect"):
                print(f"connections/s (each with wsnotify_connect): {bench_connect_rate(b):.0f}",
                      flush=True)
            if args.only in (None, "delivery"):
                bench_delivery(b, db)
            if args.only not in (None, "idle"):
                return
            opened, base, after, per, dt, m = bench_idle(b, args.idle, args.procs)
            print(f"idle connections: {opened} opened in {dt:.1f}s "
                  f"(bridge says {m.get('wsnotify_connections', 0):.0f})")
            print(f"bridge RSS: {base} KiB idle, {after} KiB with them: "
                  f"{per:.0f} bytes per idle connection")
        finally:
            b.stop()
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
