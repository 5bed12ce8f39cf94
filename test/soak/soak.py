#!/usr/bin/python3
"""Soak test of wsnotify-bridge: many wsnotify.v1 connections churning while
messages flow; the bridge's RSS and open file descriptors are sampled every
10 s and must stay flat; no message may be lost or doubled.

  test/soak/run [--duration 600] [--connections 15000] [--workers 4] ...

A throwaway cluster and one bridge are started (test/e2e/conftest.py's
classes).  Client worker processes open their share of the connections
(users u0..uN, several connections each), wait until every connection has a
cursor (one priming message per user), then each worker keeps closing a
random connection and reopening it with ?since=<last cursor> (resume) while a
sender commits send_ws calls to random users.  At the end the sender stops,
every client must hold every message of its user exactly once, and the
samples are printed (and written as JSON with --json).
"""
import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "test", "e2e"))

import websockets  # noqa: E402

from conftest import Bridge, Cluster, Database, add_template, token  # noqa: E402


class SoakClient:
    """One logical wsnotify.v1 client: reconnects resume from its cursor."""

    def __init__(self, user, url):
        self.user, self.url = user, url
        self.cursor = None
        self.got = {}              # n -> times received
        self.primed = asyncio.Event()
        self.ws = None
        self.reconnects = 0

    async def open(self):
        since = f"&since={self.cursor}" if self.cursor else ""
        for attempt in range(200):
            try:
                self.ws = await websockets.connect(
                    f"{self.url}?token={token(self.user, exp_in=86400)}{since}",
                    subprotocols=["wsnotify.v1"], ping_interval=None, max_queue=None,
                    open_timeout=30, close_timeout=2)
                return
            except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake):
                await asyncio.sleep(0.05 + 0.05 * attempt)
        raise RuntimeError(f"{self.user}: cannot connect")

    async def read(self):
        """Read until the socket closes; record every message."""
        try:
            async for raw in self.ws:
                f = json.loads(raw)
                if f.get("type") == "reset":
                    raise AssertionError(f"{self.user}: reset {f}")
                if "id" in f:
                    self.cursor = f["id"]
                    n = f["data"]["n"]
                    if n < 0:
                        self.primed.set()
                    else:
                        self.got[n] = self.got.get(n, 0) + 1
        except websockets.ConnectionClosed:
            pass


async def worker_main(idx, args, users, url, conn, stop_evt, prime_evt):
    rnd = random.Random(idx)
    clients = [SoakClient(u, url) for u in users]
    sem = asyncio.Semaphore(64)
    readers = {}

    async def start(c):
        async with sem:
            await c.open()
        readers[c] = asyncio.create_task(c.read())

    await asyncio.gather(*(start(c) for c in clients))
    conn.send(("connected", len(clients)))
    await asyncio.get_running_loop().run_in_executor(None, prime_evt.wait)
    await asyncio.wait_for(asyncio.gather(*(c.primed.wait() for c in clients)), 300)
    conn.send(("primed", len(clients)))
    # churn: close a random connection and reopen it with its cursor
    period = 1.0 / args.churn if args.churn > 0 else None
    while not stop_evt.is_set():
        await asyncio.sleep(period or 0.5)
        if period is None:
            continue
        c = rnd.choice(clients)
        await c.ws.close()
        await readers[c]
        await c.open()
        c.reconnects += 1
        readers[c] = asyncio.create_task(c.read())
    conn.send(("churned", sum(c.reconnects for c in clients)))
    # wait for the final tally request, then report what each client holds
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    conn.send(("got", [(c.user, c.got) for c in clients]))
    for c in clients:
        await c.ws.close()


def worker(idx, args, users, url, conn, stop_evt, prime_evt):
    asyncio.run(worker_main(idx, args, users, url, conn, stop_evt, prime_evt))


def sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def sender(db, nusers, rate, stop, sent):
    """Commit send_ws calls to random users at about rate messages per second."""
    rnd = random.Random(7)
    n = 0
    with db.connect() as conn:
        t0 = time.time()
        while not stop.is_set():
            batch = 10
            with conn.transaction():
                for _ in range(batch):
                    u = f"u{rnd.randrange(nusers)}"
                    conn.execute("SELECT send_ws(%s, jsonb_build_object('n', %s::int))", (u, n))
                    sent.setdefault(u, []).append(n)
                    n += 1
            ahead = n / rate - (time.time() - t0)
            if ahead > 0:
                time.sleep(ahead)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600, help="seconds of churn (default 600)")
    ap.add_argument("--connections", type=int, default=15000)
    ap.add_argument("--users", type=int, default=0, help="default: connections / 7")
    ap.add_argument("--workers", type=int, default=4, help="client processes")
    ap.add_argument("--churn", type=float, default=10, help="reconnects per second per worker")
    ap.add_argument("--rate", type=float, default=200, help="messages per second")
    ap.add_argument("--interval", type=float, default=10, help="seconds between samples")
    ap.add_argument("--json", help="write samples and totals here")
    args = ap.parse_args()
    nusers = args.users or max(1, args.connections // 7)

    cluster = Cluster()
    cluster.init()
    add_template(cluster)
    db = Database(cluster)
    bridge = Bridge(db, args=["--max-connections", str(args.connections + 1000),
                              "--log-level", "warn", "--verbose=false",
                              "--max-connections-per-user", "1000"])
    procs, pipes = [], []
    try:
        bridge.start()
        url = f"ws://127.0.0.1:{bridge.port}/"
        stop_evt, prime_evt = mp.Event(), mp.Event()
        users = [f"u{i % nusers}" for i in range(args.connections)]
        for w in range(args.workers):
            a, b = mp.Pipe()
            p = mp.Process(target=worker, args=(w, args, users[w::args.workers], url, b,
                                                stop_evt, prime_evt))
            p.start()
            procs.append(p)
            pipes.append(a)
        t0 = time.time()
        for a in pipes:
            assert a.recv()[0] == "connected"
        print(f"{args.connections} connections open in {time.time() - t0:.1f} s "
              f"({nusers} users, {args.workers} client processes)", flush=True)
        db.sql("SELECT send_ws(u, '{\"n\": -1}') FROM generate_series(0, %s - 1) i, "
               "LATERAL (SELECT 'u' || i AS u) x", nusers)
        prime_evt.set()
        for a in pipes:
            assert a.recv()[0] == "primed"
        print("every connection has a cursor; churn and messages start", flush=True)

        sent, stop = {}, threading.Event()
        th = threading.Thread(target=sender, args=(db, nusers, args.rate, stop, sent))
        th.start()
        samples = []
        start = time.time()
        while True:
            el = time.time() - start
            rss, fds = sample(bridge.proc.pid)
            m = bridge.metrics()
            # /metrics may time out under load: None, not a false 0
            samples.append({"t": round(el), "rss_kib": rss, "fds": fds,
                            "connections": m.get("wsnotify_connections"),
                            "messages_out": m.get("wsnotify_messages_out_total")})
            print(f"t={el:6.0f}s rss={rss / 1024:7.1f} MiB fds={fds:6d} "
                  f"connections={samples[-1]['connections']} "
                  f"messages_out={samples[-1]['messages_out']}", flush=True)
            if el >= args.duration:
                break
            time.sleep(min(args.interval, args.duration - el + 0.01))
        stop_evt.set()
        stop.set()
        th.join()
        reconnects = sum(a.recv()[1] for a in pipes)
        total = sum(len(v) for v in sent.values())
        # let the last messages arrive, then tally
        time.sleep(5)
        lost = dup = expected = 0
        for a in pipes:
            a.send("tally")
        for a in pipes:
            kind, got = a.recv()
            for user, g in got:
                want = sent.get(user, [])
                expected += len(want)
                lost += sum(1 for n in want if n not in g)
                dup += sum(v - 1 for v in g.values() if v > 1)
        for p in procs:
            p.join(30)
        rss = [s["rss_kib"] for s in samples]
        fds = [s["fds"] for s in samples]
        summary = {"duration_s": args.duration, "connections": args.connections,
                   "users": nusers, "reconnects": reconnects, "messages_sent": total,
                   "deliveries_expected": expected, "lost": lost, "duplicated": dup,
                   "rss_kib_first": rss[0], "rss_kib_last": rss[-1], "rss_kib_max": max(rss),
                   "fds_first": fds[0], "fds_last": fds[-1], "fds_max": max(fds)}
        print(json.dumps(summary, indent=1))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"summary": summary, "samples": samples}, f, indent=1)
        # flat: the second half's RSS within 10 % (plus 8 MiB) of the first sample
        # after the connections were made; fds within 2 % of the first sample
        half = rss[len(rss) // 2:]
        ok = lost == 0 and dup == 0 and max(half) <= rss[0] * 1.10 + 8192 \
            and max(fds) <= fds[0] * 1.02 + 16
        print("soak PASSED" if ok else "soak FAILED")
        return 0 if ok else 1
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        bridge.stop()
        cluster.destroy()


if __name__ == "__main__":
    sys.exit(main())
