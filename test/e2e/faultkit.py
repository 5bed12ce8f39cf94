"""A harness for the fault-injection suites: senders, counting clients, a ledger.

Senders (threads, one database session each) commit transactions that call
send_ws; each message body is {"s": sender, "tx": t, "k": k}, unique by
(s, tx, k), k in the order sent within its transaction.  Clients (asyncio
tasks) record every frame they receive:

  Plain   - one socket, never reopened: rule 3 says it must get everything.
  V1      - wsnotify.v1; whenever its socket goes (a killed bridge, or on
            purpose with churn=True) it reconnects with ?since=<last id>,
            to whichever bridge target() names then.

When the senders are done, the truth is the outbox itself (every committed
message is there for wsnotify.retention): each client must have received
exactly its user's messages, each once, each transaction's in order.  The
senders' acknowledged commits are checked to be in the outbox, so a lost
outbox row cannot hide behind the truth.
"""
import asyncio
import json
import random
import threading
import time
from collections import Counter, defaultdict

import psycopg
import websockets

from conftest import token

UNKNOWN = object()


class Progress:
    """Messages acknowledged so far, across sender threads."""

    def __init__(self):
        self.n = 0
        self.lock = threading.Lock()

    def add(self, n):
        with self.lock:
            self.n += n


class Sender(threading.Thread):
    """Commits a planned list of transactions, riding out connection loss."""

    def __init__(self, db, sid, plan, users, progress, synchronous_commit="on", seconds=3.0):
        super().__init__(daemon=True)
        self.rate = sum(plan) / seconds   # messages per second, so the load spans the fault
        self.db, self.sid, self.plan, self.users = db, sid, plan, users
        self.progress = progress          # a Progress shared by the senders
        self.sync = synchronous_commit
        self.acked = set()                # (s, tx) whose COMMIT returned
        self.failed = 0                   # transactions whose outcome is unknown
        self.error = None

    def connect(self, deadline):
        while True:
            try:
                conn = psycopg.connect(self.db.cluster.dsn(self.db.name), autocommit=False,
                                       connect_timeout=2)
                conn.execute(f"SET synchronous_commit = {self.sync}")
                conn.commit()
                return conn
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)

    def send_tx(self, conn, t, n):
        """One transaction of n messages, spread over the users, in order."""
        nu = len(self.users)
        if n == 1:
            conn.execute("SELECT send_ws(%s, jsonb_build_object('s', %s::int, 'tx', %s::int, "
                         "'k', 0))", (self.users[(self.sid + t) % nu], self.sid, t))
        else:
            conn.execute("SELECT send_ws((%s::text[])[1 + (%s::int + k) %% %s::int], "
                         "jsonb_build_object('s', %s::int, 'tx', %s::int, 'k', k)) "
                         "FROM generate_series(0, %s::int - 1) AS k",
                         (self.users, t, nu, self.sid, t, n))
        conn.commit()

    def run(self):
        try:
            deadline = time.time() + 60
            conn = self.connect(deadline)
            t0, done = time.time(), 0
            for t, n in enumerate(self.plan):
                ahead = done / self.rate - (time.time() - t0)
                if ahead > 0:
                    time.sleep(ahead)
                done += n
                try:
                    self.send_tx(conn, t, n)
                    self.acked.add((self.sid, t))
                    self.progress.add(n)
                except psycopg.OperationalError:
                    self.failed += 1
                    try:
                        conn.close()
                    except Exception:
                        pass
                    conn = self.connect(deadline)
            conn.close()
        except Exception as e:  # reported by the test
            self.error = e


def plan_for(total, senders, seed=4):
    """Per sender: transaction sizes summing to total/senders, singles and batches mixed."""
    rng = random.Random(seed)
    per = total // senders
    plans = []
    for _ in range(senders):
        sizes, left = [], per
        while left > 0:
            n = 1 if rng.random() < 0.85 else rng.choice((20, 50, 100, 200))
            n = min(n, left)
            sizes.append(n)
            left -= n
        plans.append(sizes)
    return plans


class Client:
    """Common bookkeeping of a counting client."""

    def __init__(self, user, name):
        self.user, self.name = user, name
        self.got = []          # message bodies (dicts) in arrival order
        self.ids = []          # cursors, v1 only
        self.resets = []
        self.connects = 0
        self.closed_by_server = 0
        self.done = False
        self.primed = False
        self.ws = None

    def record(self, data):
        if isinstance(data, dict) and "s" in data:
            self.got.append(data)
        elif isinstance(data, dict) and data.get("prime"):
            self.primed = True


class Plain(Client):
    """A plain client: one socket for the whole test."""

    def __init__(self, user, bridge):
        super().__init__(user, f"plain:{user}@{bridge.port}")
        self.bridge = bridge

    async def run(self):
        ws = await websockets.connect(self.bridge.ws_url(token(self.user)), max_size=None,
                                      ping_interval=None, max_queue=None)
        self.connects += 1
        self.ws = ws
        try:
            async for frame in ws:
                self.record(json.loads(frame))
        except websockets.ConnectionClosed:
            pass
        if not self.done:
            self.closed_by_server += 1


class V1(Client):
    """A wsnotify.v1 client that resumes from its last cursor on any loss."""

    def __init__(self, user, target, churn=False):
        super().__init__(user, f"v1{'-churn' if churn else ''}:{user}")
        self.target = target     # () -> the bridge to (re)connect to
        self.churn = churn
        self.churning = churn
        self.ws = None

    def url(self):
        b = self.target()
        since = f"&since={self.ids[-1]}" if self.ids else ""
        return b.ws_url(token(self.user)) + since

    async def open(self):
        deadline = time.time() + 40
        while True:
            try:
                ws = await websockets.connect(self.url(), subprotocols=["wsnotify.v1"],
                                              max_size=None, ping_interval=None,
                                              max_queue=None, open_timeout=5)
                self.connects += 1
                return ws
            except (OSError, websockets.InvalidStatusCode, websockets.InvalidHandshake,
                    asyncio.TimeoutError) as e:
                if time.time() > deadline:
                    raise AssertionError(f"{self.name} could not reconnect for 40 s: {e!r}")
                await asyncio.sleep(0.05)

    async def run(self):
        while not self.done:
            self.ws = ws = await self.open()
            t_end = None
            try:
                while True:
                    if t_end is None and self.churning and self.primed:
                        t_end = time.time() + random.uniform(0.1, 0.3)
                    timeout = max(0.0, t_end - time.time()) if t_end else 0.1
                    try:
                        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
                    except asyncio.TimeoutError:
                        if t_end is None:
                            continue
                        break          # churn: drop the socket on purpose
                    if frame.get("type") == "reset":
                        self.resets.append(frame)
                    elif "id" in frame:
                        self.ids.append(int(frame["id"]))
                        self.record(frame["data"])
                await ws.close()
            except websockets.ConnectionClosed:
                if not self.done:
                    self.closed_by_server += 1
            if not self.ids:
                raise AssertionError(f"{self.name} lost its socket before any cursor")


async def prime(db, clients, users):
    """Once every client is connected, one message per user, received by every
    client: every v1 client has a cursor before the senders start."""
    async def until(pred):
        while not pred():
            await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(until(lambda: all(c.connects for c in clients)), 15)
        for u in users:
            db.sql("SELECT send_ws(%s, '{\"prime\": true}')", u)
        await asyncio.wait_for(until(lambda: all(c.primed for c in clients)), 15)
    except asyncio.TimeoutError:
        raise AssertionError("clients not ready: " + ", ".join(
            f"{c.name} connects={c.connects} primed={c.primed}" for c in clients))


def truth(db):
    """{user: [(id, key)]} of every test message in the outbox, in id order."""
    out = defaultdict(list)
    for mid, target, body in db.sql(
            "SELECT id, target, body FROM websocket_message WHERE kind = 'u' AND body ? 's' "
            "ORDER BY id"):
        out[target].append((mid, (body["s"], body["tx"], body["k"])))
    return out


def key(m):
    return (m["s"], m["tx"], m["k"])


def check_client(c, expected):
    """(missing, duplicated, out_of_order) for one client against its user's truth."""
    exp_keys = [k for _, k in expected]
    got = Counter(key(m) for m in c.got)
    missing = len(set(exp_keys) - set(got))
    duplicated = sum(n - 1 for n in got.values() if n > 1)
    extra = len(set(got) - set(exp_keys))
    last_k = {}
    disorder = 0
    for m in c.got:
        tx = (m["s"], m["tx"])
        if tx in last_k and m["k"] <= last_k[tx]:
            disorder += 1
        last_k[tx] = m["k"]
    if isinstance(c, V1):
        disorder += sum(1 for a, b in zip(c.ids, c.ids[1:]) if b <= a)
    return {"missing": missing, "duplicated": duplicated, "unexpected": extra,
            "out_of_order": disorder}


class Scenario:
    """Senders + clients + one fault in the middle; then the ledger."""

    def __init__(self, db, clients, users, total=10000, senders=4, fault_at=(0.3,),
                 synchronous_commit="on"):
        self.db, self.clients, self.users = db, clients, users
        self.total = total
        self.progress = Progress()
        self.senders = [Sender(db, i, p, users, self.progress, synchronous_commit)
                        for i, p in enumerate(plan_for(total, senders))]
        self.fault_at = fault_at
        self.report = {}

    async def run(self, fault, timeout=45):
        t0 = time.time()
        tasks = [asyncio.create_task(c.run()) for c in self.clients]
        await prime(self.db, self.clients, self.users)
        for s in self.senders:
            s.start()
        loop = asyncio.get_running_loop()
        for frac in self.fault_at:
            while self.progress.n < frac * self.total and any(s.is_alive() for s in self.senders):
                await asyncio.sleep(0.005)
            self.report.setdefault("fault_at_messages", []).append(self.progress.n)
            await loop.run_in_executor(None, fault)
        while any(s.is_alive() for s in self.senders):
            await asyncio.sleep(0.02)
        for s in self.senders:
            assert s.error is None, f"sender {s.sid}: {s.error!r}"
        for c in self.clients:
            if isinstance(c, V1):
                c.churning = False
        self.expected = await loop.run_in_executor(None, truth, self.db)
        acked = {(s.sid, t) for s in self.senders for (_, t) in s.acked}
        in_outbox = {(k[0], k[1]) for rows in self.expected.values() for _, k in rows}
        lost = acked - in_outbox
        assert not lost, f"{len(lost)} acknowledged transactions are not in the outbox"
        deadline = time.time() + timeout
        while time.time() < deadline:
            if all(len(c.got) >= len(self.expected[c.user]) for c in self.clients):
                break
            if any(t.done() for t in tasks):     # a client gave up: no use waiting
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)          # room for a duplicate to show up
        for c in self.clients:
            c.done = True
            if c.ws is not None:
                await c.ws.close()
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        self.client_errors = [r for r in results if isinstance(r, Exception)]
        self.report.update(
            seconds=round(time.time() - t0, 1),
            committed=sum(len(v) for v in self.expected.values()),
            unknown_outcome=sum(s.failed for s in self.senders),
            frames=sum(len(c.got) for c in self.clients),
            reconnects=sum(max(0, c.connects - 1) for c in self.clients))
        return self.report

    def ledger(self):
        """{client name: counts} for every client with a non-zero count."""
        bad = {}
        for c in self.clients:
            r = check_client(c, self.expected[c.user])
            if any(r.values()) or c.resets:
                bad[c.name] = dict(r, resets=len(c.resets), received=len(c.got),
                                   expected=len(self.expected[c.user]))
        return bad
