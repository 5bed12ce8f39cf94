"""Least privilege: the whole suite's bridges connect as `bridge`, a plain
role whose one membership is wsnotify_bridge (conftest); these tests pin that."""
import base64

import psycopg
import pytest

from conftest import raw_upgrade, token, wait_for


def bridge_session_role(db):
    rows = db.sql("SELECT DISTINCT usename FROM pg_stat_activity "
                  "WHERE application_name = 'wsnotify-bridge' AND datname = current_database()")
    assert len(rows) == 1, rows
    return rows[0][0]


def test_the_bridge_connects_as_a_role_without_superuser_or_other_powers(bridge, db):
    role = bridge_session_role(db)
    assert db.sql("SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication "
                  "FROM pg_roles WHERE rolname = %s", role) == [(False,) * 5]
    member_of = db.sql("SELECT b.rolname FROM pg_auth_members m "
                       "JOIN pg_roles r ON r.oid = m.member JOIN pg_roles b ON b.oid = m.roleid "
                       "WHERE r.rolname = %s", role)
    assert member_of == [("wsnotify_bridge",)]
    assert raw_upgrade(bridge.port, f"/?token={token('alice')}")[0] == 101


def test_the_bridge_role_cannot_write_websocket_client_directly(bridge, db):
    with psycopg.connect(db.bridge_dsn, autocommit=True) as conn:
        for stmt in ("INSERT INTO websocket_client (connection_id, user_id, bridge_id) "
                     "VALUES ('x', 'mallory', 'b')",
                     "UPDATE websocket_client SET user_id = 'mallory'",
                     "DELETE FROM websocket_client"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(stmt)


def test_the_bridge_role_cannot_read_the_jwt_secret(db):
    with psycopg.connect(db.bridge_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT current_setting('wsnotify.jwt_secret')")


# --- inline NOTIFY payloads: sealed, so LISTEN reads nothing and NOTIFY forges nothing ---

def app_role(db, name="app_user"):
    db.sql(f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') "
           f"THEN CREATE ROLE {name} LOGIN; END IF; END $$")
    db.sql(f"GRANT EXECUTE ON FUNCTION send_ws(text, jsonb) TO {name}")
    return psycopg.connect(db.cluster.dsn(db.name, name), autocommit=True)


def test_a_role_listening_on_the_channel_reads_no_message_body(db):
    with app_role(db) as spy:
        notes = []
        spy.add_notify_handler(notes.append)
        spy.execute("LISTEN wsnotify")
        db.sql("SELECT send_ws('alice', '{\"secret\": \"s3cr3t-value\"}')")
        wait_for(lambda: spy.execute("SELECT 1") and notes, what="the notification")
        assert len(notes) == 1
        payload = notes[0].payload
        last, first, sealed = payload.split(" ")       # the inline form, sealed
        assert int(last) == int(first)
        assert "s3cr3t" not in payload and "alice" not in payload
        # base64 alone would pass the line above: the decoded bytes must not
        # hold the body or the target either (sealed, not merely encoded)
        opened = base64.b64decode(sealed + "=" * (-len(sealed) % 4), validate=True)
        assert b"s3cr3t" not in opened and b"alice" not in opened, opened
        for stmt in ("SELECT * FROM websocket_inline_key", "SELECT wsnotify_inline_key()"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                spy.execute(stmt)


def test_a_forged_notify_delivers_nothing_and_the_next_message_still_arrives(bridge, db):
    import asyncio
    from conftest import connect, expect_silence, recv_json, run

    async def go():
        ws = await connect(bridge, "alice")
        db.sql("SELECT send_ws('alice', '{\"n\": 1}')")
        assert await recv_json(ws) == {"n": 1}
        nxt = db.sql("SELECT max(id) + 1 FROM websocket_message")[0][0]
        body = '{"forged": true}'
        clear = f"{nxt} {nxt}\nu 5 {len(body)}\nalice{body}"
        with app_role(db) as mallory:
            mallory.execute("SELECT pg_notify('wsnotify', %s)", (clear,))
            mallory.execute("SELECT pg_notify('wsnotify', %s)",
                            (f"{nxt} {nxt} " + "QUJD" * 20,))
        await expect_silence(ws, 0.5)
        db.sql("SELECT send_ws('alice', '{\"n\": 2}')")
        assert await recv_json(ws) == {"n": 2}
        await ws.close()
    run(go())
    # a fresh bridge, two forged payloads (one in clear, one that does not
    # open with the key): both counted, and nothing else was
    assert bridge.metrics()["wsnotify_inline_rejected_total"] == 2
