#!/usr/bin/python3
"""Commit-to-NOTIFY latency of the ordering worker (extension/order.c): one
session sends one message per transaction at a steady rate, another LISTENs
on wsnotify; the latency is from the sender's COMMIT returning to the
notification carrying its position arriving (what a bridge waits for before
it can write the frame; the bridge's own part is unchanged by 1.1). Runs
with wsnotify.deliver_durable off, then on, then off again, and prints the
percentiles.

Usage: bench/order_latency.py DSN [rate per second, default 500] [seconds, default 10]
(a superuser DSN of a database with the extension; the server must have
wsnotify preloaded)."""
import select
import sys
import threading
import time

import psycopg

sys.setswitchinterval(0.0001)
dsn = sys.argv[1]
rate = int(sys.argv[2]) if len(sys.argv) > 2 else 500
secs = float(sys.argv[3]) if len(sys.argv) > 3 else 10


def set_durable(on):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"ALTER SYSTEM SET wsnotify.deliver_durable = {'on' if on else 'off'}")
        c.execute("SELECT pg_reload_conf()")
    time.sleep(1)


def measure(sync):
    arrived = {}
    committed = {}
    done = threading.Event()

    def listener():
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("LISTEN wsnotify")
            pg = c.pgconn
            while not done.is_set():
                select.select([pg.socket], [], [], 0.2)
                pg.consume_input()
                while (n := pg.notifies()) is not None:
                    now = time.perf_counter()
                    words = n.extra.decode().split(" ")
                    last = int(words[0])
                    first = int(words[1]) if len(words) > 1 else last
                    for p in range(first, last + 1):
                        arrived.setdefault(p, now)
    t = threading.Thread(target=listener)
    t.start()
    time.sleep(0.5)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"SET synchronous_commit = {sync}")
        c.execute("SELECT wsnotify_order_barrier()")
        base = c.execute("SELECT coalesce(max(id), 0) FROM websocket_message").fetchone()[0]
        n = int(rate * secs)
        start = time.perf_counter()
        for i in range(n):
            target = start + i / rate
            wait = target - time.perf_counter()
            if wait > 0:
                time.sleep(wait)    # not a spin: the listener thread needs the GIL
            c.execute("SELECT send_ws('bench', '{\"x\": 1}')")
            committed[base + i + 1] = time.perf_counter()
        time.sleep(1)
    done.set()
    t.join()
    lat = sorted((arrived[p] - committed[p]) * 1000 for p in committed if p in arrived)
    missing = len(committed) - len(lat)
    q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))]
    return q(0.5), q(0.99), missing, len(committed)


for durable in (False, True, False):
    set_durable(durable)
    for sync in ("off", "on"):
        p50, p99, missing, n = measure(sync)
        print(f"| {'on' if durable else 'off'} | {sync} | {rate}/s | {p50:.3f} | {p99:.3f} | {missing} of {n} |")
set_durable(False)
