"""The ordering worker (extension/order.c, issue 16): sending takes no
cluster-wide lock, and what the new process brings can fail without losing
or doubling a message: the worker killed, its ring overflowing, the server
crashing between a sending commit and the worker ordering it.  Plus the
exact hand-off from a query to the live stream with ws_cursor()."""
import os
import signal
import threading
import time

import psycopg

from conftest import connect, recv_json, run, token, wait_for


def worker_pid(db):
    rows = db.sql("SELECT pid FROM pg_stat_activity "
                  "WHERE backend_type = 'wsnotify ordering worker' AND datname = current_database()")
    return rows[0][0] if rows else None


def ensure_worker(db):
    db.sql("SELECT wsnotify_order_barrier()")
    wait_for(lambda: worker_pid(db) is not None, what="the ordering worker")
    return worker_pid(db)


def send_serial(db, user, start, count, synchronous_commit="off"):
    """One transaction per message, numbered start..start+count-1."""
    with db.connect() as conn:
        conn.execute(f"SET synchronous_commit = {synchronous_commit}")
        for i in range(start, start + count):
            conn.execute("SELECT send_ws(%s, jsonb_build_object('i', %s::int))", (user, i))


async def receive_numbers(ws, count, timeout=20):
    return [(await recv_json(ws, timeout=timeout))["i"] for _ in range(count)]


def test_no_client_backend_waits_on_an_object_lock_while_32_sessions_send(db):
    """Rule 8: 1.0 had senders queue on the NOTIFY commit lock (Lock 'object')
    in 449 of 457 samples; now none may, ever."""
    stop = time.time() + 3
    sent = [0] * 32
    waits, samples = [], [0]

    def sender(i):
        with db.connect() as conn:
            conn.execute("SET synchronous_commit = on")
            while time.time() < stop:
                conn.execute("SELECT send_ws('offline', '{\"x\": 1}')")
                sent[i] += 1

    def sampler():
        with db.connect() as conn:
            while time.time() < stop:
                waits.extend(conn.execute(
                    "SELECT pid, wait_event FROM pg_stat_activity "
                    "WHERE backend_type = 'client backend' AND wait_event_type = 'Lock' "
                    "AND wait_event = 'object'").fetchall())
                samples[0] += 1
                time.sleep(0.01)
    ts = [threading.Thread(target=sender, args=(i,)) for i in range(32)]
    ts.append(threading.Thread(target=sampler))
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(f"\nsent {sum(sent)}, samples {samples[0]}, object-lock waits {len(waits)}")
    assert sum(sent) > 1000 and samples[0] > 50
    assert waits == []
    assert db.sql("SELECT wsnotify_order_barrier()")[0][0]
    assert db.sql("SELECT count(*) - count(id) FROM websocket_message")[0][0] == 0


def test_killed_worker_is_replaced_and_nothing_is_lost_or_doubled(bridge, db):
    async def go():
        ws = await connect(bridge, "alice")
        first = ensure_worker(db)
        send_serial(db, "alice", 0, 300)
        db.sql("SELECT pg_terminate_backend(%s)", first)
        send_serial(db, "alice", 300, 300)
        got = await receive_numbers(ws, 600)
        assert got == list(range(600))
        assert worker_pid(db) not in (None, first)
        await ws.close()
    run(go())


def test_ring_overflow_is_rescanned_in_order_of_transactions(bridge, db):
    """More committed senders than the ring holds (8192) while the worker is
    stopped: the overflow makes it rescan the table, and every message still
    arrives once, each transaction's in order."""
    async def go():
        ws = await connect(bridge, "alice")
        pid = ensure_worker(db)
        os.kill(pid, signal.SIGSTOP)
        try:
            send_serial(db, "alice", 0, 9000)
        finally:
            os.kill(pid, signal.SIGCONT)
        got = await receive_numbers(ws, 9000, timeout=30)
        assert sorted(got) == list(range(9000)) and len(set(got)) == 9000
        assert db.sql("SELECT count(*) - count(id) FROM websocket_message")[0][0] == 0
        await ws.close()
    run(go(), timeout=120)


def test_crash_between_sending_commits_and_their_ordering_loses_nothing(bridge, db, cluster):
    """Senders committed, the worker had not ordered them (stopped), then the
    server crashes (SIGKILL of the worker: the postmaster resets every
    process).  After recovery the new worker finds the rows through the
    unpositioned index and the client receives each message once, in order."""
    async def go():
        ws = await connect(bridge, "alice")
        pid = ensure_worker(db)
        os.kill(pid, signal.SIGSTOP)
        # durable commits: a crash may only take back what was not flushed
        send_serial(db, "alice", 0, 100, synchronous_commit="on")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: bridge.healthz()[0] == 200, timeout=30, what="bridge back")
        got = await receive_numbers(ws, 100, timeout=30)
        assert got == list(range(100))
        await ws.close()
    run(go(), timeout=90)


def test_long_open_transaction_holds_back_no_one(bridge, db):
    """Idle in transaction, holding an xid: other transactions deliver."""
    async def go():
        ws = await connect(bridge, "alice")
        idle = db.connect(autocommit=False)
        idle.execute("SELECT send_ws('alice', '{\"i\": -1}')")
        idle.execute("SELECT txid_current()")
        send_serial(db, "alice", 0, 5)
        assert await receive_numbers(ws, 5, timeout=5) == list(range(5))
        idle.rollback()
        idle.close()
        await ws.close()
    run(go())


def test_ws_cursor_hands_off_exactly_from_a_snapshot_to_the_live_stream(db):
    """Read state and ws_cursor() in one REPEATABLE READ transaction while
    another transaction is in flight; then connect and resume from the cursor
    as the bridge does (wsnotify_connect, wsnotify_replay with the cursor as
    text): the in-flight one's message and the later one are replayed, the
    one the snapshot saw is not, and the live stream starts after them."""
    db.sql("CREATE TABLE notes (v text)")
    db.sql("INSERT INTO notes VALUES ('seen'); SELECT send_ws('alice', '{\"i\": 0}')")
    inflight = db.connect(autocommit=False)
    inflight.execute("INSERT INTO notes VALUES ('inflight')")
    inflight.execute("SELECT send_ws('alice', '{\"i\": 1}')")
    with db.connect(autocommit=False) as app:
        app.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        state = [r[0] for r in app.execute("SELECT v FROM notes").fetchall()]
        cursor = app.execute("SELECT ws_cursor()").fetchone()[0]
        app.commit()
    assert state == ["seen"]
    inflight.commit()
    inflight.close()
    db.sql("SELECT send_ws('alice', '{\"i\": 2}')")
    start = db.sql("SELECT last_id FROM wsnotify_connect('c1', 'b1', %s, NULL, NULL)",
                   token("alice"))[0][0]
    replayed = db.sql("SELECT kind, body FROM wsnotify_replay('c1', %s, %s)", cursor, start)
    assert replayed == [("u", '{"i": 1}'), ("u", '{"i": 2}')], replayed
    # and a cursor of another history is reset
    other = "0" * 16 + cursor[16:]
    assert db.sql("SELECT kind FROM wsnotify_replay('c1', %s, %s)", other, start) == [("r",)]


def test_worker_terminated_in_the_middle_of_its_work_never_takes_the_server_down(db, cluster):
    """pg_terminate_backend -- which is also what DROP DATABASE ... WITH (FORCE)
    sends -- reaching the worker while it positions and purges large batches:
    it must stop at its next interrupt check.  Before the worker took
    PostgreSQL's `die` handler, the background worker default (FATAL from
    inside the signal handler) could land in a critical section, which is a
    PANIC and restarts the whole server; a connection to another database
    is the witness."""
    witness = psycopg.connect(cluster.dsn("postgres"), autocommit=True)
    db.sql("ALTER DATABASE " + db.name + " SET wsnotify.retention = '1s'")
    with db.connect() as conn:
        for _ in range(10):
            conn.execute("SELECT send_ws('alice', jsonb_build_object('i', g)) "
                         "FROM generate_series(1, 20000) g")
        time.sleep(1.5)     # all of it expired: the worker positions, then purges
        terminated = 0
        deadline = time.time() + 15
        while time.time() < deadline:
            pid = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = "
                               "'wsnotify ordering worker' AND datname = current_database()"
                               ).fetchone()
            if pid is None:
                conn.execute("SELECT wsnotify_worker_start()")
                time.sleep(0.02)
                continue
            time.sleep(0.01 * (terminated % 5))
            conn.execute("SELECT pg_terminate_backend(%s)", pid)
            terminated += 1
    assert terminated > 5
    assert witness.execute("SELECT 1").fetchone() == (1,)
    witness.close()
    # what the terminated workers left, the next one finishes
    db.sql("SELECT wsnotify_order_barrier(30000)")
    assert db.sql("SELECT count(*) - count(id) FROM websocket_message")[0][0] == 0
