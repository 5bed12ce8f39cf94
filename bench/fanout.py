#!/usr/bin/python3
"""Fan-out of one topic message to N subscribers (issue 8's closing note).

Starts a throwaway cluster and one wsnotify-bridge (test/e2e/conftest.py's
helpers), opens N WebSocket connections from several client processes (a
process may hold 20,000 open files; the sources are spread over 127.0.0.x),
subscribes every one of them server-side to the topic `bench` in one
statement (`SELECT ws_subscribe(connection_id, 'bench') FROM
websocket_client`), then, for each N:

  * publish_ws('bench', ...) `--rounds` times, one committed statement each;
  * broadcast_ws(...) the same number of times, to the same connections;
  * with --kinds send_ws: one transaction of N send_ws calls, one to each
    connection's user (one user per connection), the same number of times:
    per-user messages, N per transaction, to N users;

and measures, per round, the time from just before the statement to the
moment half of the connections and all of them have received the frame.
Every client process stamps arrivals with time.time() (CLOCK_REALTIME: one
clock for all processes on this machine).  Deliveries per bridge CPU-second
are N x rounds over the bridge's utime+stime (/proc/PID/stat) across those
rounds (the log lines on stderr also give the nanosecond schedstat sum of its
threads, a check on the 10 ms ticks).  The clients speak plain frames (no envelope) and do no JSON parsing
on arrival, to keep their cost low; they share the 2 cores with the bridge
and PostgreSQL all the same (see docs/benchmarks.md).

Usage: /usr/bin/python3 bench/fanout.py [--counts 1000,10000,19000] [--rounds 10] [--procs 4]
           [--kinds publish_ws,broadcast_ws,send_ws] [--perf DIR]
Prints a Markdown table.  --perf DIR records the bridge with `perf record -g`
during each measurement (DIR/N-KIND.data).
"""
import argparse
import asyncio
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "e2e"))
import psycopg  # noqa: E402
import websockets  # noqa: E402
from conftest import Bridge, Cluster, Database, add_template, token  # noqa: E402
from procstat import perf_record, sched_cpu_seconds, stat_cpu_seconds  # noqa: E402

TOPIC = "bench"


# ---- the client processes ----

class Receiver:
    """One client process's sockets and the arrival times of the current round."""

    def __init__(self, url, addr, name):
        self.url, self.addr, self.name = url, addr, name
        self.socks = []
        self.arrivals = []
        self.expect = 0
        self.done = None

    async def open_more(self, n, concurrency=64):
        """Open n more connections, each reading frames and stamping their arrival."""
        sem = asyncio.Semaphore(concurrency)
        base = len(self.socks)

        async def one(i):
            async with sem:
                ws = await websockets.connect(
                    f"{self.url}?token={token(f'{self.name}-{i}')}", ping_interval=None,
                    max_size=None, open_timeout=120, close_timeout=1,
                    local_addr=(self.addr, 0))
                self.socks.append(ws)
                asyncio.get_running_loop().create_task(self.read(ws))
        await asyncio.gather(*(one(base + i) for i in range(n)))

    async def read(self, ws):
        """Stamp every frame; the round is over when every socket has one."""
        try:
            async for _ in ws:
                self.arrivals.append(time.time())
                if len(self.arrivals) == self.expect and self.done:
                    self.done.set()
        except websockets.ConnectionClosed:
            pass

    async def round(self, timeout):
        """Wait for one frame per socket; return the arrival times."""
        if len(self.arrivals) < self.expect:
            try:
                await asyncio.wait_for(self.done.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        return self.arrivals

    def arm(self):
        """Get ready for the next round."""
        self.arrivals = []
        self.expect = len(self.socks)
        self.done = asyncio.Event()


def client_main(url, addr, name, conn):
    """A client process: obey the parent's commands on `conn` (a Pipe end)."""
    async def go():
        r = Receiver(url, addr, name)
        loop = asyncio.get_running_loop()
        while True:
            cmd, arg = await loop.run_in_executor(None, conn.recv)
            if cmd == "open":
                await r.open_more(arg)
                conn.send(len(r.socks))
            elif cmd == "arm":
                r.arm()
                conn.send(True)
            elif cmd == "collect":
                conn.send(await r.round(arg))
            elif cmd == "quit":
                for ws in r.socks:
                    ws.transport.abort()
                conn.send(True)
                return
    asyncio.run(go())


# ---- the parent ----

class Clients:
    """The client processes, driven over pipes."""

    def __init__(self, port, procs):
        self.pipes, self.procs = [], []
        self.sizes = [0] * procs
        for k in range(procs):
            parent, child = mp.Pipe()
            p = mp.Process(target=client_main, daemon=True,
                           args=(f"ws://127.0.0.1:{port}/", f"127.0.0.{k + 2}", f"c{k}", child))
            p.start()
            self.pipes.append(parent)
            self.procs.append(p)

    def ask(self, cmd, args):
        """Send each process its command, then gather the answers."""
        for pipe, arg in zip(self.pipes, args):
            pipe.send((cmd, arg))
        return [pipe.recv() for pipe in self.pipes]

    def open_total(self, total):
        """Grow to `total` connections, spread evenly; return the count open."""
        k = len(self.pipes)
        want = [total // k + (1 if i < total % k else 0) for i in range(k)]
        self.sizes = self.ask("open", [max(0, w - s) for w, s in zip(want, self.sizes)])
        return sum(self.sizes)

    def round(self, fire, timeout=20):
        """Arm, run fire() (returns t0), collect every arrival; return (t0, sorted times)."""
        self.ask("arm", [None] * len(self.pipes))
        t0 = fire()
        times = []
        for part in self.ask("collect", [timeout] * len(self.pipes)):
            times.extend(part)
        return t0, sorted(times)

    def quit(self):
        """Ask the processes to drop their sockets and exit; kill those that do not."""
        for pipe in self.pipes:
            try:
                pipe.send(("quit", None))
            except (OSError, BrokenPipeError):
                pass
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()


def subscribe_all(db):
    """Subscribe every connection not yet subscribed, in one statement; return (count, seconds)."""
    t0 = time.time()
    n = db.sql(f"""SELECT count(ws_subscribe(c.connection_id, '{TOPIC}'))
                   FROM websocket_client c
                   WHERE NOT EXISTS (SELECT 1 FROM websocket_subscription s
                                     WHERE s.connection_id = c.connection_id
                                       AND s.topic = '{TOPIC}')""")[0][0]
    return n, time.time() - t0


def measure(clients, db, bridge_pid, n, kind, rounds):
    """`rounds` rounds of one statement each; per round (half ms, all ms, received)."""
    stmt = {"publish_ws": f"SELECT publish_ws('{TOPIC}', %s::jsonb)",
            "broadcast_ws": "SELECT broadcast_ws(%s::jsonb)",
            # one transaction of N per-user messages, one to each connection's user
            "send_ws": "SELECT count(send_ws(user_id, %s::jsonb)) FROM websocket_client"}[kind]
    results, cpu, fine = [], 0.0, 0.0
    with psycopg.connect(db.cluster.dsn(db.name), autocommit=True) as conn:
        for r in range(rounds):
            body = f'{{"round": {r}, "kind": "{kind}"}}'

            def fire():
                """Run the statement (autocommit: it commits); return when it started."""
                t0 = time.time()
                conn.execute(stmt, (body,))
                return t0
            c0, f0 = stat_cpu_seconds(bridge_pid), sched_cpu_seconds(bridge_pid)
            t0, times = clients.round(fire)
            cpu += stat_cpu_seconds(bridge_pid) - c0
            fine += sched_cpu_seconds(bridge_pid) - f0
            got = len(times)
            first = (times[0] - t0) * 1000 if times else float("nan")
            half = (times[(n + 1) // 2 - 1] - t0) * 1000 if got >= (n + 1) // 2 else float("nan")
            full = (times[n - 1] - t0) * 1000 if got >= n else float("nan")
            results.append((first, half, full, got))
            if got < n:
                print(f"# {kind} x{n}: round {r} got {got} of {n} frames; stopping this size",
                      file=sys.stderr, flush=True)
                break
            time.sleep(0.3)
    return results, cpu, fine


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", default="1000,10000,19000",
                    help="comma-separated connection counts, increasing")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--procs", type=int, default=4, help="client processes")
    ap.add_argument("--kinds", default="publish_ws,broadcast_ws",
                    help="statements to measure: publish_ws, broadcast_ws, send_ws (one "
                         "transaction of N send_ws calls, one per connected user)")
    ap.add_argument("--physical", metavar="BIN",
                    help="run this physical-limit probe (bench/physical_rounds) for each N, "
                         "before the statements, and give each rate as a share of it")
    ap.add_argument("--perf", metavar="DIR",
                    help="record the bridge with `perf record -g` during each measurement, "
                         "into DIR/N-KIND.data")
    args = ap.parse_args()
    counts = [int(x) for x in args.counts.split(",")]
    # SIGTERM (timeout, kill): unwind through the finally below, which stops everything
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    cluster = Cluster()
    cluster.init()
    clients = None
    b = None
    rows = []
    try:
        add_template(cluster)
        db = Database(cluster)
        # no pings: an idle subscriber is what is measured (and lws 4.1 builds before the
        # empty-ping fix closed every silent client at ping_interval + ping_timeout)
        b = Bridge(db, ["--max-connections", "30000", "--log-level", "warn",
                        "--heartbeat-interval", "10s", "--ping-interval", "0"])
        b.args.remove("-v")
        b.start()
        clients = Clients(b.port, args.procs)
        for n in counts:
            t0 = time.time()
            opened = clients.open_total(n)
            live = db.sql("SELECT count(*) FROM websocket_client")[0][0]
            print(f"# {opened} connections open ({live} rows) in {time.time() - t0:.1f} s",
                  file=sys.stderr, flush=True)
            subscribed, dt = subscribe_all(db)
            total_subs = db.sql("SELECT count(*) FROM websocket_subscription WHERE topic = %s",
                                TOPIC)[0][0]
            print(f"# subscribed {subscribed} more in {dt:.2f} s ({total_subs} in all)",
                  file=sys.stderr, flush=True)
            physical = float("nan")
            if args.physical:
                out = subprocess.run([args.physical, str(opened), str(args.rounds)],
                                     capture_output=True, text=True, check=True).stdout
                physical = float(out.split(":")[-1].split()[0])
                print(f"# physical: {out.strip()}", file=sys.stderr, flush=True)
            for kind in args.kinds.split(","):
                stop_perf = None
                if args.perf:
                    stop_perf = perf_record(b.proc.pid,
                                            os.path.join(args.perf, f"{opened}-{kind}.data"))
                    time.sleep(1)
                res, cpu, fine = measure(clients, db, b.proc.pid, opened, kind, args.rounds)
                if stop_perf:
                    stop_perf()
                firsts = [x[0] for x in res]
                halves = [x[1] for x in res]
                fulls = [x[2] for x in res]
                complete = sum(1 for x in res if x[3] >= opened)
                rows.append((opened, kind, len(res), complete, statistics.median(firsts),
                             statistics.median(halves), statistics.median(fulls), max(fulls),
                             cpu, opened * len(res) / cpu if cpu > 0 else float("nan"),
                             opened * len(res) / fine if fine > 0 else float("nan"),
                             physical))
                print(f"# {kind} x{opened}: first {[round(x, 1) for x in firsts]} ms, "
                      f"half {[round(h, 1) for h in halves]} ms, "
                      f"all {[round(f, 1) for f in fulls]} ms, bridge CPU {cpu:.2f} s "
                      f"(utime+stime), {fine:.3f} s (schedstat, all threads)",
                      file=sys.stderr, flush=True)
    finally:
        if clients:
            clients.quit()
        if b:
            b.stop()
        cluster.destroy()

    print("| subscribers | statement | rounds (complete) | first has it, median ms "
          "| half have it, median ms | all have it, median ms | all, worst ms "
          "| bridge CPU s | deliveries per bridge CPU-s | same, by schedstat "
          "| physical limit, writes per CPU-s | schedstat rate / limit |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, kind, rounds, complete, first, half, full, worst, cpu, rate, fine_rate, phys in rows:
        print(f"| {n} | `{kind}` | {rounds} ({complete}) | {first:.1f} | {half:.1f} "
              f"| {full:.1f} | {worst:.1f} | {cpu:.2f} | {rate:,.0f} | {fine_rate:,.0f} "
              f"| {phys:,.0f} | {fine_rate / phys:.0%} |")


if __name__ == "__main__":
    main()
