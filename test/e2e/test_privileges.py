"""Least privilege: the whole suite's bridges connect as `bridge`, a plain
role whose one membership is wsnotify_bridge (conftest); these tests pin that."""
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
