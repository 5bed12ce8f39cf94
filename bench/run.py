#!/usr/bin/python3
"""make bench / make bench-full: wsnotify against the stack a web team writes
instead (bench/peers/node: Node.js + ws + pg LISTEN + jsonwebtoken) and the
fastest one it could pick (bench/peers/bun: Bun.serve's native pub/sub + Bun's
SQL LISTEN + jose), on the same database, tokens, messages and load generator
(bench/loadgen), in one run, beside the machine's physical limit, measured two ways: bench/physical
streams frames without a pause (its readers are never asleep), and
bench/physical_rounds writes one frame per socket per round with a pause
between rounds, as the fan-out phase does (each write wakes a sleeping
reader, which on loopback the writer pays).  The fan-out is reported against
both.

All systems share two cores with PostgreSQL, the senders (pgbench) and the
load generator, so raw rates understate them; every rate is reported with the
CPU seconds the system's own process(es) used, and systems are compared by
deliveries per CPU-second of that process (/proc/PID/stat utime+stime).

Latency is commit-to-arrival as the load generator sees it: every message
carries "t", clock_timestamp() in microseconds taken by the sending statement
just before its (autocommit) commit; the generator subtracts it from its own
CLOCK_REALTIME on arrival (one clock, one machine).

The tail of commit-to-arrival moves a lot from one phase to the next on a
shared machine, so it is also measured with every system's server up at once
(idle but for the one being sent to, each on its own channel), in several
phases that alternate the systems; the summary's latency is the median of
those phases.

What sending costs the writing application (tpcb-like with each system's
trigger and an INSERT-only floor, synchronous_commit off and on; send_ws
against an INSERT of the same row at 8, 16 and 32 clients) is the last phase,
bench/trigger_cost.py, which also runs alone.

Usage: /usr/bin/python3 bench/run.py [--full] [--systems wsnotify,node,bun]
(--systems: which systems, in the order they are measured)
Writes bench/results/summary.json, bench/results/details.json, the plots
(bench/results/*.png, copied to docs/img/ with --full) and prints a table.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "e2e"))
import psycopg  # noqa: E402
import trigger_cost  # noqa: E402
from conftest import (BRIDGE, PGBIN, SECRET, Cluster, free_port, http_get,  # noqa: E402
                      parse_metrics, wait_for)
from procstat import perf_record, rss_kib, sched_cpu_seconds, stop_proc  # noqa: E402

RESULTS = os.path.join(HERE, "results")
LOADGEN = os.path.join(HERE, "loadgen")
PHYSICAL = os.path.join(HERE, "physical")
PHYSICAL_ROUNDS = os.path.join(HERE, "physical_rounds")
PEERS = os.path.join(HERE, "peers")
TOPIC = "bench"
PERF_DIR = None      # --perf DIR: `perf record -g` of each phase (profile())
T_NOW = "(extract(epoch from clock_timestamp()) * 1e6)::bigint"


T0 = time.time()


def log(*a):
    """A progress line on stderr, after the seconds since the start."""
    print(f"[{time.time() - T0:4.0f} s]", *a, file=sys.stderr, flush=True)


# --- processes -----------------------------------------------------------------

def machine_cpu_seconds():
    """Busy CPU time of the whole machine (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds over a phase: the system under test, the load generator,
    and everything else on the machine (PostgreSQL and pgbench, mostly)."""

    def __init__(self, system_pids, fleet):
        self.system_pids = system_pids
        self.gen_pids = [g.proc.pid for g in fleet.gens]
        self.start = (sched_cpu_seconds(system_pids), sched_cpu_seconds(self.gen_pids),
                      machine_cpu_seconds())

    def read(self):
        system = sched_cpu_seconds(self.system_pids) - self.start[0]
        gen = sched_cpu_seconds(self.gen_pids) - self.start[1]
        machine = machine_cpu_seconds() - self.start[2]
        return {"cpu_s": system, "loadgen_cpu_s": gen,
                "other_cpu_s": max(0.0, machine - system - gen)}


class Loadgen:
    """One bench/loadgen process; its JSON lines are read by a thread."""

    def __init__(self, ports, conns, users, user_offset=0, sources=4, path="/",
                 subscribe=None, concurrency=256, expect=None):
        args = [LOADGEN, "--host", "127.0.0.1", "--ports", ",".join(map(str, ports)),
                "--conns", str(conns), "--concurrency", str(concurrency),
                "--sources", str(sources), "--secret", SECRET, "--users", str(users),
                "--user-offset", str(user_offset), "--path", path, "--stats-interval", "250"]
        if subscribe:
            args += ["--subscribe", subscribe]
        if expect:
            args += ["--expect", str(expect)]
        self.conns = conns
        self.lines = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.errors = []
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            with self.cond:
                self.lines.append(obj)
                self.cond.notify_all()

    def _read_err(self):
        for line in self.proc.stderr:
            self.errors.append(line.rstrip())

    def wait_line(self, kind, after=0, timeout=120):
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for obj in self.lines[after:]:
                    if obj.get("type") == kind:
                        return obj
                left = deadline - time.time()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"loadgen: no {kind} line ({self.errors[-3:]})")
                self.cond.wait(left)

    def progress(self):
        """The latest progress line of the current phase."""
        with self.cond:
            for obj in reversed(self.lines):
                if obj.get("type") == "progress":
                    return obj
                if obj.get("type") == "phase_reset":
                    break
        return {"connected": 0, "received": 0}

    def signal_and_wait(self, sig, kind):
        with self.cond:
            n = len(self.lines)
        self.proc.send_signal(sig)
        return self.wait_line(kind, n)

    def reset(self):
        return self.signal_and_wait(signal.SIGUSR1, "phase_reset")

    def report(self):
        return self.signal_and_wait(signal.SIGUSR2, "report")

    def stop(self):
        stop_proc(self.proc)


class Fleet:
    """Several loadgen processes (a process may hold 20,000 open files)."""

    PER_PROC = 18000
    SOURCES = 8          # each process spreads its connections over 127.0.0.1-8

    def __init__(self, ports, conns, users=None, path="/", subscribe=None, sources=SOURCES,
                 rss_probe=None, expect=None, concurrency=128):
        self.gens = []
        users = users or conns
        left, offset = conns, 0
        while left > 0:
            n = min(left, self.PER_PROC)
            # users are consecutive across processes: u0 .. u(users-1)
            self.gens.append(Loadgen(ports, n, min(users, n), offset % users, sources, path,
                                     subscribe, concurrency, expect=expect))
            left -= n
            offset += n
        self.conns = conns
        self.curve = []          # (connected, rss KiB) samples while connecting
        self.rss_probe = rss_probe

    def wait_connected(self, timeout=300):
        deadline = time.time() + timeout
        done = [None] * len(self.gens)
        while time.time() < deadline:
            for i, g in enumerate(self.gens):
                if done[i] is None:
                    for obj in list(g.lines):
                        if obj.get("type") == "connected":
                            done[i] = obj
            if self.rss_probe:
                self.curve.append((sum(g.progress().get("connected", 0) for g in self.gens),
                                   self.rss_probe()))
            if all(done):
                break
            time.sleep(0.25)
        if not all(done):
            raise RuntimeError("loadgen: not every process finished connecting")
        first = min(d["first_start_us"] for d in done)
        last = max(d["last_open_us"] for d in done)
        connected = sum(d["connected"] for d in done)
        failed = sum(d["failed"] for d in done)
        codes = {}
        for d in done:
            for k, v in d.get("fail_codes", {}).items():
                codes[k] = codes.get(k, 0) + v
        return {"connected": connected, "failed": failed, "fail_codes": codes,
                "seconds": (last - first) / 1e6,
                "connects_per_s": connected / max((last - first) / 1e6, 1e-6)}

    def received(self):
        return sum(g.progress().get("received", 0) for g in self.gens)

    def reset(self):
        for g in self.gens:
            g.reset()

    def reports(self):
        return [g.report() for g in self.gens]

    def stop(self):
        for g in self.gens:
            g.stop()


# --- the systems under test ------------------------------------------------------

class Servers:
    """The processes of one system under test, each on a free port, logging to
    <cluster dir>/<log_prefix>-<port>.log; a subclass's popen(port, logf) starts one."""

    def __init__(self, env):
        self.env = env
        self.procs = []
        self.ports = []

    def start(self, count=1):
        for _ in range(count):
            port = free_port()
            logf = open(os.path.join(self.env.dir, f"{self.log_prefix}-{port}.log"), "ab")
            p = self.popen(port, logf)
            self.procs.append(p)
            self.ports.append(port)
            wait_for(lambda: http_status(port, "/healthz") == 200 or p.poll() is not None,
                     timeout=30, what=f"{self.what} healthy")
            if p.poll() is not None:
                raise RuntimeError(f"{self.what} exited at start")

    def pids(self):
        return [p.pid for p in self.procs]

    def stop(self):
        for p in self.procs:
            stop_proc(p)
        self.procs, self.ports = [], []


class WsnotifySystem(Servers):
    """wsnotify-bridge processes on the bench database."""

    name = "wsnotify"
    what = "wsnotify-bridge"
    log_prefix = "bridge"

    def popen(self, port, logf):
        return subprocess.Popen([BRIDGE, "--dsn", self.env.dsn("bridge"),
                                 "--listen", f"127.0.0.1:{port}",
                                 "--bridge-id", f"bench-{port}",
                                 "--max-connections", "20000",
                                 "--max-connections-per-user", "0",
                                 # a line per connection is not what is measured here
                                 "--log-level", "warn"],
                                stdout=logf, stderr=subprocess.STDOUT)

    def stop(self):
        super().stop()
        self.env.sql("DELETE FROM websocket_client")

    def subscribe_all(self):
        self.env.sql(f"SELECT count(ws_subscribe(connection_id, '{TOPIC}')) "
                     "FROM websocket_client")

    def sql_user(self, user_expr):
        return f"SELECT send_ws({user_expr}, jsonb_build_object('t', {T_NOW}))"

    def sql_user_batch(self, n, users):
        return (f"SELECT count(send_ws('u' || ((:base + k) % {users}), "
                f"jsonb_build_object('t', {T_NOW}))) FROM generate_series(1, {n}) k")

    def sql_broadcast(self):
        return f"SELECT broadcast_ws(jsonb_build_object('t', {T_NOW}))"

    def sql_topic(self):
        return f"SELECT publish_ws('{TOPIC}', jsonb_build_object('t', {T_NOW}))"

    def trigger_body(self):
        return ("PERFORM send_ws(NEW.aid::text, jsonb_build_object('account', NEW.aid, "
                "'delta', NEW.delta));")

    def counters(self):
        """How each message reached the bridges: from the NOTIFY payload or fetched."""
        out = {}
        for port in self.ports:
            status, body = http_get(port, "/metrics")
            if status != 200:
                raise RuntimeError(f"wsnotify-bridge /metrics: status {status}")
            metrics = parse_metrics(body)
            for key in ("notifications_total", "rows_inline_total", "rows_fetched_total",
                        "inline_rejected_total"):
                if "wsnotify_" + key in metrics:
                    out[key] = out.get(key, 0) + int(metrics["wsnotify_" + key])
        return out

    subscribe_action = None
    trigger_kind = "send_ws"


class NodeSystem(Servers):
    """The Node.js peer: server.js processes, one LISTEN client each."""

    name = "node"
    what = "node peer"
    log_prefix = "node"
    channel = "wsnotify_peer"

    def command(self):
        return ["node", "server.js"]

    def popen(self, port, logf):
        env = dict(os.environ, PORT=str(port), HOST="127.0.0.1",
                   DATABASE_URL=self.env.url(), JWT_SECRET=SECRET, CHANNEL=self.channel)
        return subprocess.Popen(self.command(), stdout=logf, stderr=subprocess.STDOUT,
                                env=env, cwd=os.path.join(PEERS, self.name))

    def subscribe_all(self):
        pass         # the generator sends {"action": "subscribe"} on open

    subscribe_action = TOPIC
    trigger_kind = "pg_notify"

    def _notify(self, what):
        return f"pg_notify('{self.channel}', json_build_object({what}, 'data', " \
               f"json_build_object('t', {T_NOW}))::text)"

    def sql_user(self, user_expr):
        return "SELECT " + self._notify(f"'user', {user_expr}")

    def sql_user_batch(self, n, users):
        user = f"'user', 'u' || ((:base + k) % {users})"
        return f"SELECT count({self._notify(user)}) FROM generate_series(1, {n}) k"

    def sql_broadcast(self):
        return "SELECT " + self._notify("'user', '*'")

    def sql_topic(self):
        return "SELECT " + self._notify(f"'topic', '{TOPIC}'")

    def trigger_body(self):
        return (f"PERFORM pg_notify('{self.channel}', json_build_object('user', NEW.aid::text, "
                "'data', json_build_object('account', NEW.aid, 'delta', NEW.delta))::text);")

    def counters(self):
        return {}


class BunSystem(NodeSystem):
    """The Bun peer: the same outside as the Node.js peer (statements, payloads,
    subscribe), on a channel of its own so that both may be up at once."""

    name = "bun"
    what = "bun peer"
    log_prefix = "bun"
    channel = "wsnotify_peer_bun"

    def command(self):
        return [os.path.join(PEERS, "bun", "node_modules", ".bin", "bun"), "server.js"]


SYSTEMS = {s.name: s for s in (WsnotifySystem, NodeSystem, BunSystem)}


def http_status(port, path):
    return http_get(port, path)[0]


# --- the environment: one cluster, one database --------------------------------

class Env:
    def __init__(self):
        self.cluster = Cluster()
        self.cluster.init()
        # realistic durability for the senders' commits, room for pgbench -c 32 and 6 bridges
        with psycopg.connect(self.cluster.dsn("postgres"), autocommit=True) as c:
            c.execute("ALTER SYSTEM SET fsync = on")
            c.execute("ALTER SYSTEM SET max_connections = 200")
            c.execute("ALTER SYSTEM SET shared_buffers = '256MB'")
            c.execute("CREATE DATABASE bench")
        self.cluster.restart()
        self.dir = self.cluster.dir
        self.sql("CREATE EXTENSION wsnotify")
        self.sql("CREATE ROLE bridge LOGIN IN ROLE wsnotify_bridge")

    def dsn(self, user="postgres"):
        return self.cluster.dsn("bench", user)

    def url(self):
        return f"postgresql://postgres@127.0.0.1:{self.cluster.port}/bench"

    def sql(self, q, *params):
        with psycopg.connect(self.dsn(), autocommit=True) as c:
            cur = c.execute(q, params or None)
            return cur.fetchall() if cur.description else None

    def pgbench(self, script, clients, seconds, rate=None, builtin=None, jobs=2, options=None):
        """Run pgbench; return its tps."""
        return self.pgbench_counts(script, clients, seconds, rate, builtin, jobs, options)[0]

    def pgbench_counts(self, script, clients, seconds, rate=None, builtin=None, jobs=2,
                       options=None):
        """Run pgbench; return (tps, transactions processed).  With -R the tps
        runs a few % above processed / seconds, so count what was sent with the
        second.  options: the sessions' PGOPTIONS ("-c synchronous_commit=on")."""
        args = [os.path.join(PGBIN, "pgbench"), "-n", "-T", str(seconds), "-c", str(clients),
                "-j", str(min(jobs, clients)), "-h", "127.0.0.1", "-p", str(self.cluster.port),
                "-U", "postgres", "bench"]
        if rate:
            args += ["-R", str(rate)]
        if builtin:
            args += ["-b", builtin]
        else:
            path = os.path.join(self.dir, "script.sql")
            with open(path, "w") as f:
                f.write(script + ";\n")
            os.chmod(path, 0o644)
            args += ["-f", path]
        env = dict(os.environ, PGOPTIONS=options) if options else None
        out = subprocess.run(args, capture_output=True, text=True, env=env)
        tps = processed = None
        for line in out.stdout.splitlines():
            if line.startswith("tps = "):
                tps = float(line.split()[2])
            elif line.startswith("number of transactions actually processed:"):
                processed = int(line.split(":")[1].split("/")[0])
        if tps is None or processed is None:
            raise RuntimeError(f"pgbench failed: {out.stderr[-500:]}")
        return tps, processed

    def destroy(self):
        self.cluster.destroy()


# --- scenarios -------------------------------------------------------------------

def percent(a, b):
    return 100.0 * a / b if b else None


def profile(system, phase):
    """With --perf DIR: start `perf record -g` of the system's first process for
    one phase, into DIR/<system>-<phase>.data; return what stops it (a no-op
    without --perf)."""
    if not PERF_DIR:
        return lambda: None
    return perf_record(system.pids()[0], os.path.join(PERF_DIR, f"{system.name}-{phase}.data"))


def idle(env, system, n, bridges=1):
    """(1) + (2): open n idle connections; RSS per connection, connects per second."""
    system.start(bridges)
    pids = system.pids()
    base = rss_kib(pids)
    done = profile(system, f"connect-{n}")
    fleet = Fleet(system.ports, n, rss_probe=lambda: rss_kib(pids))
    try:
        c = fleet.wait_connected()
        done()
        time.sleep(2)          # let the ping/keepalive state settle
        c["rss_kib"] = rss_kib(pids)
        c["rss_base_kib"] = base
        c["rss_kib_per_conn"] = (c["rss_kib"] - base) / max(c["connected"], 1)
        c["connect_cpu_s"] = sched_cpu_seconds(pids)
        c["curve"] = fleet.curve
        c["bridges"] = bridges
        log(f"  {system.name}: {c['connected']} idle connections on {bridges} process(es), "
            f"{c['rss_kib_per_conn']:.2f} KiB each, {c['connects_per_s']:.0f} connects/s, "
            f"failed {c['failed']} {c['fail_codes']}")
        return c
    finally:
        fleet.stop()
        system.stop()


def wait_received(fleet, target, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline and fleet.received() < target:
        time.sleep(0.05)
    return fleet.received()


def pgbench_phase(env, fleet, pids, script, clients, seconds, rate, sent_of, timeout):
    """One pgbench run of script against a connected fleet; waits (up to timeout
    seconds) until 99.9 % of sent_of(transactions processed) messages have
    arrived.  Returns (tps,
    seconds from the start of pgbench until then, CpuMeter reading, the first
    generator's report)."""
    fleet.reset()
    meter = CpuMeter(pids, fleet)
    t0 = time.time()
    tps, processed = env.pgbench_counts(script, clients=clients, seconds=seconds, rate=rate)
    wait_received(fleet, sent_of(processed) * 0.999, timeout)
    elapsed = time.time() - t0
    return tps, elapsed, meter.read(), fleet.reports()[0]


def rate_phase(env, system, fleet, users, rate, seconds):
    """One message per transaction to a random one of `users` connected users,
    at `rate` messages per second (2 senders), or as fast as 8 senders go
    (rate None): what arrived, at what latency, for how much server CPU."""
    script = f"\\set uid random(0, {users - 1})\n" + system.sql_user("'u' || :uid")
    tps, _, cpus, r = pgbench_phase(env, fleet, system.pids(), script, 2 if rate else 8,
                                    seconds, rate, lambda sent: sent, 10)
    cpu = cpus["cpu_s"]
    return {"rate": rate, "tps": tps, "received": r["received"],
            "deliveries_per_s": r["received"] / seconds, **cpus,
            "deliveries_per_cpu_s": r["received"] / cpu if cpu else None,
            "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
            "max_ms": r["max_us"] / 1000}


def latency_phases(env, systems, users, rates, seconds, reps):
    """(3b) commit-to-arrival at fixed rates with every system's server up at
    once, `users` connected users each: `reps` rounds of one rate_phase per
    system and rate, the systems' order reversed every other round, so that
    the machine's load falls on all alike.  Per system and rate: every phase,
    and the medians of their p50s and p99s."""
    fleets = {}
    out = {s.name: {} for s in systems}
    try:
        for s in systems:
            s.start(1)
            fleets[s.name] = Fleet(s.ports, users)
            fleets[s.name].wait_connected()
        for rep in range(reps):
            for rate in rates:
                for s in (systems if rep % 2 == 0 else systems[::-1]):
                    done = profile(s, f"latency-{rate}-{rep + 1}")
                    ph = rate_phase(env, s, fleets[s.name], users, rate, seconds)
                    done()
                    out[s.name].setdefault(f"rate_{rate}", {"rate": rate, "phases": []})[
                        "phases"].append(ph)
                    log(f"  {s.name} at {rate} msgs/s, round {rep + 1}: p50 {ph['p50_ms']:.2f} "
                        f"ms p99 {ph['p99_ms']:.2f} ms")
        for per_rate in out.values():
            for v in per_rate.values():
                for k in ("p50_ms", "p99_ms"):
                    v[k] = statistics.median(ph[k] for ph in v["phases"])
        return out
    finally:
        for f in fleets.values():
            f.stop()
        for s in systems:
            s.stop()


def per_user(env, system, users, rates, seconds, batch_seconds):
    """(3) per-user messages to `users` connected users (one loadgen process)."""
    out = {"users": users}
    system.start(1)
    pids = system.pids()
    fleet = Fleet(system.ports, users)
    try:
        fleet.wait_connected()
        for rate in rates:
            before = system.counters()
            key = f"rate_{rate}" if rate else "saturation"
            out[key] = rate_phase(env, system, fleet, users, rate, seconds)
            out[key]["server_counters"] = {k: v - before.get(k, 0)
                                           for k, v in system.counters().items()}
            log(f"  {system.name} {users} users, {key}: {out[key]['tps']:.0f} msgs/s sent, "
                f"p50 {out[key]['p50_ms']:.2f} ms p99 {out[key]['p99_ms']:.2f} ms, "
                f"{out[key]['deliveries_per_cpu_s'] or 0:.0f} per CPU-s")
        # 1000 messages per transaction, as fast as two senders go
        script = f"\\set base random(0, {users - 1})\n" + system.sql_user_batch(1000, users)
        done = profile(system, f"per-user-{users}-batch")
        tps, elapsed, cpus, r = pgbench_phase(env, fleet, pids, script, 2, batch_seconds, None,
                                              lambda sent: sent * 1000, 30)
        done()
        cpu = cpus["cpu_s"]
        out["batch_1000"] = {"tx_per_s": tps, "received": r["received"],
                             "deliveries_per_s": r["received"] / elapsed, **cpus,
                             "deliveries_per_cpu_s": r["received"] / cpu if cpu else None,
                             "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000}
        log(f"  {system.name} {users} users, 1000/tx: {r['received'] / elapsed:.0f} deliveries/s, "
            f"{out['batch_1000']['deliveries_per_cpu_s'] or 0:.0f} per CPU-s")
        return out
    finally:
        fleet.stop()
        system.stop()


def fanout(env, system, n, rounds, kinds=("broadcast", "topic"), around=None):
    """(4) broadcast and topic to n connections: time to half and to all.
    around(pids, kind), if given, is called before each kind's rounds, once
    everything is connected and subscribed; what it returns is called after the
    kind's last round (bench/fanout_ab.py starts and stops `perf record` with it;
    without it, run.py's --perf does)."""
    around = around or (lambda pids, kind: profile(system, f"fanout-{kind}-{n}"))
    out = {"connections": n}
    system.start(1)
    pids = system.pids()
    fleet = Fleet(system.ports, n, subscribe=system.subscribe_action, expect=n)
    try:
        fleet.wait_connected()
        system.subscribe_all()
        time.sleep(0.5)
        for kind, sql in (("broadcast", system.sql_broadcast()), ("topic", system.sql_topic())):
            if kind not in kinds:
                continue
            done = around(pids, kind)
            halves, alls, delivered, cpu = [], [], 0, 0.0
            others = {"loadgen_cpu_s": 0.0, "other_cpu_s": 0.0}
            for _ in range(rounds):
                fleet.reset()
                meter = CpuMeter(pids, fleet)
                env.sql(sql)
                got = wait_received(fleet, n, 30)
                cpus = meter.read()
                cpu += cpus["cpu_s"]
                for k in others:
                    others[k] += cpus[k]
                reports = fleet.reports()
                # every process timed the same message ("t"): all = the last
                # arrival anywhere; half = the biggest process's half
                r = dict(max(reports, key=lambda x: x["received"]))
                arrivals = [x["last_arrival_us"] for x in reports
                            if x.get("last_arrival_us") is not None]
                r["last_arrival_us"] = max(arrivals) if arrivals else None
                r["received"] = sum(x["received"] for x in reports)
                delivered += r["received"]
                # arrival times come relative to the earliest "t" (the commit)
                if got >= n and r.get("last_arrival_us") is not None:
                    alls.append(r["last_arrival_us"] / 1000)
                    if r.get("half_arrival_us") is not None:
                        halves.append(r["half_arrival_us"] / 1000)
            out[kind] = {"rounds": rounds, "delivered": delivered, "cpu_s": cpu, **others,
                         "deliveries_per_cpu_s": delivered / cpu if cpu else None,
                         "half_ms": statistics.median(halves) if halves else None,
                         "all_ms": statistics.median(alls) if alls else None,
                         "complete_rounds": len(alls)}
            log(f"  {system.name} {kind} to {n}: all in {out[kind]['all_ms']} ms (median), "
                f"{out[kind]['deliveries_per_cpu_s'] or 0:.0f} per CPU-s")
            if done:
                done()
        return out
    finally:
        fleet.stop()
        system.stop()


def pgbench_cost(env, systems, cfg):
    """(5) tpcb-like with and without a trigger sending to the user of each row
    (each system's kind of trigger, and the floor: one that only INSERTs the
    row), synchronous_commit off and on; send_ws against an INSERT of the
    same row at 8, 16 and 32 clients (bench/trigger_cost.py); then one
    message per transaction against the alternatives."""
    bodies = {}
    for s in systems:    # the peers' triggers are the same pg_notify: measure it once
        bodies.setdefault(s.trigger_kind, s.trigger_body())
    bodies["floor"] = trigger_cost.FLOOR_BODY
    trigger = trigger_cost.trigger_overhead(env, bodies, cfg["trigger_clients"],
                                            cfg["trigger_seconds"], cfg["trigger_rounds"], log)
    scaling = trigger_cost.send_vs_insert(env, cfg["scaling_clients"], cfg["trigger_seconds"],
                                          cfg["trigger_rounds"], log=log)
    clients_list, seconds = cfg["pgbench_clients"], cfg["pgbench_seconds"]
    # one message per transaction: send_ws against a bare pg_notify (which writes no WAL),
    # and against what a durable hand-written version costs: a row in an outbox table and
    # a pg_notify in one transaction, and the row alone
    env.sql("CREATE TABLE IF NOT EXISTS bench_outbox (id bigserial PRIMARY KEY, "
            "user_id text, body jsonb)")
    row_sql = "INSERT INTO bench_outbox (user_id, body) VALUES ('u1', '{\"x\": 1}')"
    bare = {}
    for clients in clients_list:
        bare[clients] = {
            "send_ws": env.pgbench("SELECT send_ws('u1', '{\"x\": 1}')", clients, seconds),
            "pg_notify": env.pgbench("SELECT pg_notify('bench', '{\"x\": 1}')", clients,
                                     seconds),
            "insert_and_pg_notify": env.pgbench(
                f"BEGIN;\n{row_sql};\nSELECT pg_notify('bench', '');\nCOMMIT", clients,
                seconds),
            "insert": env.pgbench(row_sql, clients, seconds)}
        env.sql("TRUNCATE websocket_message, bench_outbox")
        log(f"  one message per transaction, {clients} clients: {bare[clients]}")
    return {"trigger": trigger, "single_sync_on": scaling, "single": bare}


def physical(sockets, frames):
    out = subprocess.run([PHYSICAL, "--sockets", str(sockets), "--frames", str(frames),
                          "--sources", "4"], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"physical: {out.stderr[-300:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    log(f"  physical limit at {sockets} sockets: {r['writes_per_cpu_s']:.0f} writes per CPU-s")
    return r


def physical_rounds(sockets, rounds):
    """The paced probe at a fan-out's socket count, its readers laid out as the
    fan-out's Fleet: one reader process per loadgen process (PER_PROC sockets
    each, the last the rest), each spreading its sockets over the same sources.
    A round is one write() per socket, then 0.3 s of pause: run.py's rounds
    leave the generators idle between messages for longer than they need to
    fall asleep (a reset, a new SQL session, a 50 ms poll), so every write
    wakes a sleeping reader in both."""
    out = subprocess.run([PHYSICAL_ROUNDS, str(sockets), str(rounds),
                          "--per-reader", str(Fleet.PER_PROC), "--sources", str(Fleet.SOURCES)],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"physical_rounds: {out.stderr[-300:]} {out.stdout[-300:]}")
    # "N sockets, R rounds: W writes in C CPU s: X writes per CPU-second"
    line = out.stdout.strip().splitlines()[-1]
    words = line.split(":")[-1].split()
    r = {"sockets": sockets, "rounds": rounds, "writes_per_cpu_s": float(words[0]),
         "readers": -(-sockets // Fleet.PER_PROC), "sources": Fleet.SOURCES, "line": line}
    log(f"  paced physical limit at {sockets} sockets: {r['writes_per_cpu_s']:.0f} writes "
        f"per CPU-s ({rounds} rounds)")
    return r


# --- report --------------------------------------------------------------------

def summarize(d, name):
    s = d["systems"][name]
    idle1 = s["idle"][0]
    pu = s["per_user"][0]
    fan = s["fanout"][-1]
    lat = s.get("latency", {}).get("rate_500", {})
    overhead = trigger_cost.overhead_summary(d["pgbench"]["trigger"], SYSTEMS[name].trigger_kind)
    return {
        "idle_connections": max(i["connected"] for i in s["idle"]),
        "idle_rss_kib_per_conn": round(idle1["rss_kib_per_conn"], 2),
        "connects_per_s": round(idle1["connects_per_s"]),
        "deliveries_per_s": round(pu["batch_1000"]["deliveries_per_s"]),
        "deliveries_per_cpu_s": round(pu["batch_1000"]["deliveries_per_cpu_s"] or 0),
        "fanout_deliveries_per_cpu_s": round(min(
            fan["broadcast"]["deliveries_per_cpu_s"] or 0,
            fan["topic"]["deliveries_per_cpu_s"] or 0)),
        # the medians of the alternating phases where they ran (latency_phases)
        "latency_p50_ms": round(lat.get("p50_ms", pu["rate_500"]["p50_ms"]), 3),
        "latency_p99_ms": round(lat.get("p99_ms", pu["rate_500"]["p99_ms"]), 3),
        "latency_phases": len(lat.get("phases", [None])),
        "broadcast_connections": fan["connections"],
        "broadcast_all_ms": fan["broadcast"]["all_ms"],
        **overhead,
        **{f"{kind}_{fan['connections']}_deliveries_per_cpu_s": round(
            fan[kind]["deliveries_per_cpu_s"] or 0)
           for fan in s["fanout"] for kind in ("broadcast", "topic")},
    }


def probe_at(rows, n):
    """Writes per CPU-s of the probe run (d["physical"] or d["physical_rounds"])
    whose socket count is nearest n."""
    return min(rows, key=lambda r: abs(r["sockets"] - n))["writes_per_cpu_s"]


def fanout_table(d, name):
    """Each fan-out against both probes at its socket count, side by side."""
    lines = ["| fan-out | deliveries per CPU-s | stream probe | % of stream | paced probe "
             "| % of paced |", "|---|---:|---:|---:|---:|---:|"]
    for fan in d["systems"][name]["fanout"]:
        n = fan["connections"]
        stream, paced = probe_at(d["physical"], n), probe_at(d["physical_rounds"], n)
        for kind in ("broadcast", "topic"):
            v = fan[kind]["deliveries_per_cpu_s"] or 0
            lines.append(f"| {name} {kind} to {n} | {v:.0f} | {stream:.0f} | "
                         f"{percent(v, stream):.1f} | {paced:.0f} | {percent(v, paced):.1f} |")
    return "\n".join(lines)


# the columns beside wsnotify's: the peers, and the floor of the trigger rows
# (a trigger that only INSERTs the row send_ws writes, into a plain table)
PEER_KEYS = (("peer", "Node.js peer"), ("peer_bun", "Bun peer"),
             ("trigger_floor", "INSERT-only trigger"))


def table(summary):
    """wsnotify's summary beside each peer's, with wsnotify's ratio to each."""
    peers = [(k, title) for k, title in PEER_KEYS if k in summary]
    keys = [k for k in summary if k not in ("physical_writes_per_cpu_s", "extra")
            and k not in dict(PEER_KEYS)]
    lines = ["| measure | wsnotify | " + " | ".join(t for _, t in peers) + " | "
             + " | ".join(f"wsnotify / {t}" for _, t in peers) + " |",
             "|---|---|" + "---|" * (2 * len(peers))]
    pad = " |" * (2 * len(peers))
    for k in keys:
        a = summary[k]
        cells, ratios = [], []
        for p, _ in peers:
            b = summary[p].get(k)
            cells.append("" if b is None else str(b))
            ratios.append(f"{a / b:.2f}" if isinstance(a, (int, float))
                          and isinstance(b, (int, float)) and b else "")
        lines.append(f"| {k} | {a} | " + " | ".join(cells + ratios) + " |")
    lines.append(f"| physical_writes_per_cpu_s | {summary['physical_writes_per_cpu_s']} |" + pad)
    for k, v in summary.get("extra", {}).items():
        lines.append(f"| {k} | {v} |" + pad)
    return "\n".join(lines)


def plots(d, outdir):
    """Latency against rate, RSS against connections, deliveries per CPU-second."""
    if not shutil.which("gnuplot"):
        log("gnuplot not installed: no plots")
        return []
    tmp = tempfile.mkdtemp(prefix="wsnotify-plot-")
    names = list(d["systems"])
    made = []
    # latency against rate (1,000 users)
    for n in names:
        pu = d["systems"][n]["per_user"][0]
        with open(f"{tmp}/lat-{n}.dat", "w") as f:
            for k, v in sorted(((k, v) for k, v in pu.items() if k.startswith("rate_")),
                               key=lambda kv: kv[1]["rate"]):
                f.write(f"{v['rate']} {v['p50_ms']} {v['p99_ms']}\n")
    gp = ['set terminal pngcairo size 800,480', f"set output '{outdir}/latency.png'",
          "set title 'commit-to-arrival latency, 1,000 users, one message per transaction'",
          "set xlabel 'messages per second'", "set ylabel 'ms'", "set logscale y",
          "set key outside bottom center horizontal", "plot " + ", ".join(
              f"'{tmp}/lat-{n}.dat' using 1:{c} with linespoints title '{n} {p}'"
              for n in names for c, p in ((2, "p50"), (3, "p99")))]
    made.append(("latency.png", gp))
    # RSS against connections
    for n in names:
        with open(f"{tmp}/rss-{n}.dat", "w") as f:
            for conns, rss in d["systems"][n]["idle"][0]["curve"]:
                f.write(f"{conns} {rss / 1024:.2f}\n")
    gp2 = ['set terminal pngcairo size 800,480', f"set output '{outdir}/rss.png'",
           "set title 'resident memory of the server process against idle connections'",
           "set xlabel 'connections'", "set ylabel 'RSS, MiB'", "set key left top",
           "plot " + ", ".join(f"'{tmp}/rss-{n}.dat' using 1:2 with lines lw 2 title '{n}'"
                               for n in names)]
    made.append(("rss.png", gp2))
    # deliveries per CPU-second beside the physical limit
    with open(f"{tmp}/cpu.dat", "w") as f:
        f.write("scenario " + " ".join(names) + " physical\n")
        phys = d["physical"][0]["writes_per_cpu_s"]
        for label, get in (("per-user-1000/tx",
                            lambda s: s["per_user"][0]["batch_1000"]["deliveries_per_cpu_s"]),
                           ("broadcast", lambda s: s["fanout"][-1]["broadcast"]
                            ["deliveries_per_cpu_s"]),
                           ("topic", lambda s: s["fanout"][-1]["topic"]
                            ["deliveries_per_cpu_s"])):
            f.write(label + " " + " ".join(str(round(get(d["systems"][n]) or 0))
                                           for n in names) + f" {round(phys)}\n")
    gp3 = ['set terminal pngcairo size 800,480', f"set output '{outdir}/cpu.png'",
           "set title 'deliveries per CPU-second of the server process'",
           "set style data histograms", "set style fill solid 0.8 border -1",
           "set yrange [0:*]", "set key outside bottom center horizontal", "set ylabel 'deliveries per CPU-second'",
           f"plot for [i=2:{len(names) + 2}] '{tmp}/cpu.dat' using i:xtic(1) title columnheader"]
    made.append(("cpu.png", gp3))
    out = []
    for name, script in made:
        r = subprocess.run(["gnuplot"], input="\n".join(script) + "\n", text=True,
                           capture_output=True)
        if r.returncode == 0:
            out.append(os.path.join(outdir, name))
        else:
            log(f"gnuplot {name}: {r.stderr.strip()[:300]}")
    shutil.rmtree(tmp, ignore_errors=True)
    return out


# --- main ----------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="the full run (about 15 minutes)")
    ap.add_argument("--systems", default=",".join(SYSTEMS), type=lambda v: v.split(","),
                    help="comma-separated, in the order measured (default %(default)s)")
    ap.add_argument("--perf", metavar="DIR",
                    help="perf record -g of each system's (first) process in each phase, into "
                    "DIR/<system>-<phase>.data; its figures are not comparable with a run without")
    args = ap.parse_args()
    if not args.systems or any(n not in SYSTEMS for n in args.systems) \
            or len(set(args.systems)) != len(args.systems):
        ap.error(f"--systems: each of {', '.join(SYSTEMS)} at most once")
    full = args.full
    global PERF_DIR
    PERF_DIR = args.perf
    cfg = {
        "idle": [(19000, 1), (100000, 6)] if full else [(5000, 1)],
        "users": [1000, 10000] if full else [1000],
        "rates": [500, 1000, 2000, 5000, None] if full else [500, 2000, None],
        "seconds": 10 if full else 5,
        "batch_seconds": 10 if full else 5,
        "fanout": [1000, 19000] if full else [1000, 5000],
        "rounds": 10 if full else 5,
        "pgbench_clients": [8, 32] if full else [8],
        "pgbench_seconds": 15 if full else 5,
        # bench/trigger_cost.py: tpcb-like with each trigger, sync off and on, alternating
        "trigger_clients": [8, 32],
        "trigger_seconds": 5 if full else 1,
        "trigger_rounds": 2,
        "scaling_clients": [8, 16, 32],
        # the probe at the socket counts the scenarios use, to compare like with like
        "physical": [1000, 10000, 19000] if full else [1000, 5000],
        # the paced probe, at each fan-out count just before the first system's fan-out
        "physical_rounds": 20,
        # commit-to-arrival in alternating phases, all servers up (latency_phases)
        "latency_rates": [500, 5000] if full else [500],
        "latency_reps": 3,
        "latency_seconds": 5,
    }
    os.makedirs(RESULTS, exist_ok=True)
    started = time.time()
    env = Env()
    systems = [SYSTEMS[n](env) for n in args.systems]
    d = {"mode": "full" if full else "quick", "config": cfg, "systems": {},
         "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg(),
                     "kernel": os.uname().release}}
    try:
        log("physical limit")
        d["physical"] = [physical(n, 2_000_000 if full else 1_000_000) for n in cfg["physical"]]
        d["physical_rounds"] = []
        for s in systems:
            log(f"== {s.name}")
            r = d["systems"][s.name] = {}
            r["idle"] = [idle(env, s, n, b) for n, b in cfg["idle"]]
            r["per_user"] = [per_user(env, s, u, cfg["rates"], cfg["seconds"],
                                      cfg["batch_seconds"]) for u in cfg["users"]]
            r["fanout"] = []
            for n in cfg["fanout"]:
                if not any(p["sockets"] == n for p in d["physical_rounds"]):
                    d["physical_rounds"].append(physical_rounds(n, cfg["physical_rounds"]))
                r["fanout"].append(fanout(env, s, n, cfg["rounds"]))
        log("== latency, alternating " + ", ".join(s.name for s in systems))
        for name, lat in latency_phases(env, systems, cfg["users"][0], cfg["latency_rates"],
                                        cfg["latency_seconds"], cfg["latency_reps"]).items():
            d["systems"][name]["latency"] = lat
        log("== pgbench")
        d["pgbench"] = pgbench_cost(env, systems, cfg)
    finally:
        for s in systems:
            s.stop() if s.procs else None
        env.destroy()
    d["seconds"] = round(time.time() - started)
    # wsnotify's figures, the peers' beside them (any system's alone if run alone)
    main_name = "wsnotify" if "wsnotify" in d["systems"] else systems[0].name
    summary = summarize(d, main_name)
    for key, name in (("peer", "node"), ("peer_bun", "bun")):
        if name in d["systems"] and name != main_name:
            summary[key] = summarize(d, name)

    def physical_at(n):
        return probe_at(d["physical"], n)

    summary["trigger_floor"] = trigger_cost.overhead_summary(d["pgbench"]["trigger"], "floor")
    summary["physical_writes_per_cpu_s"] = round(physical_at(cfg["users"][0]))
    single = d["pgbench"]["single"]
    fan_n = cfg["fanout"][-1]
    summary["extra"] = {
        **{f"physical_writes_per_cpu_s_{r['sockets']}": round(r["writes_per_cpu_s"])
           for r in d["physical"]},
        "deliveries_per_cpu_s_pct_of_physical": round(percent(
            summary["deliveries_per_cpu_s"], physical_at(cfg["users"][0])), 1),
        f"fanout_per_cpu_s_pct_of_physical_at_{fan_n}": round(percent(
            summary["fanout_deliveries_per_cpu_s"], physical_at(fan_n)), 1),
        "send_ws_pct_of_pg_notify_tps": round(min(
            percent(v["send_ws"], v["pg_notify"]) for v in single.values()), 1),
        **{f"send_ws_pct_of_insert_and_pg_notify_tps_{c}": round(percent(
            v["send_ws"], v["insert_and_pg_notify"]), 1) for c, v in single.items()},
        **trigger_cost.scaling_summary(d["pgbench"]["single_sync_on"]),
    }
    # every fan-out against both probes: the stream probe's ratio (above, and per kind
    # here) and the paced probe's, whose pacing matches the fan-out's rounds
    for fan in d["systems"][main_name]["fanout"]:
        n = fan["connections"]
        paced = probe_at(d["physical_rounds"], n)     # run at each fan-out's n
        got = {k: fan[k]["deliveries_per_cpu_s"] or 0 for k in ("broadcast", "topic")}
        x = summary["extra"]
        x[f"physical_rounds_writes_per_cpu_s_{n}"] = round(paced)
        x[f"fanout_per_cpu_s_pct_of_paced_physical_at_{n}"] = round(percent(
            min(got.values()), paced), 1)
        for k, v in got.items():
            x[f"fanout_per_cpu_s_pct_of_physical_at_{n}_{k}"] = round(percent(
                v, physical_at(n)), 1)
            x[f"fanout_per_cpu_s_pct_of_paced_physical_at_{n}_{k}"] = round(percent(
                v, paced), 1)
    with open(os.path.join(RESULTS, "details.json"), "w") as f:
        json.dump(d, f, indent=1)
    with open(os.path.join(RESULTS, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    made = plots(d, RESULTS)
    if full:
        for p in made:
            shutil.copy(p, os.path.join(ROOT, "docs", "img", "bench-" + os.path.basename(p)))
    print(table(summary))
    print()
    for s in systems:
        print(fanout_table(d, s.name))
    print(f"\n{d['mode']} run, {d['seconds']} s; bench/results/summary.json"
          + (", plots: " + ", ".join(os.path.relpath(p, ROOT) for p in made) if made else ""))


if __name__ == "__main__":
    main()
