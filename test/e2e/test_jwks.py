"""Key rotation with wsnotify.jwt_jwks, walked step by step against a running
bridge: add the new key, sign with both, remove the old one.  No connection
is refused at any step while its key is in the set, the bridge is never
restarted (its long-lived database session sees ALTER SYSTEM + pg_reload_conf
at its next command), and connections made earlier stay open."""
import json
import os
import time

import jwt
import psycopg
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm

import websockets

from conftest import ROOT, connect, raw_upgrade, recv_json, run, wait_for

KEYS = os.path.join(ROOT, "test", "fixtures", "keys")


def private_key(name):
    with open(os.path.join(KEYS, name + ".pem"), "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


OLD = private_key("rsa")
NEW = private_key("rsa_wrong")


def jwk(key, kid):
    d = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    d.update(kid=kid, alg="RS256", use="sig")
    return d


def rs_token(user, key, kid):
    return jwt.encode({"sub": user, "exp": int(time.time()) + 3600}, key, "RS256",
                      headers={"kid": kid})


def set_system(db, **settings):
    """ALTER SYSTEM SET (None: RESET) each wsnotify setting, reload, and wait
    until a new session sees the values."""
    with psycopg.connect(db.cluster.dsn("postgres"), autocommit=True) as conn:
        for name, value in settings.items():
            if value is None:
                conn.execute(f"ALTER SYSTEM RESET wsnotify.{name}")
            else:
                conn.execute(psycopg.sql.SQL("ALTER SYSTEM SET {} = {}").format(
                    psycopg.sql.Identifier("wsnotify", name), psycopg.sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")

    def seen():
        with psycopg.connect(db.cluster.dsn("postgres"), autocommit=True) as conn:
            return all(conn.execute(f"SHOW wsnotify.{n}").fetchone()[0] == (v or "")
                       for n, v in settings.items() if n == "jwt_jwks")
    wait_for(seen, what="configuration reloaded")


def jwks(*keys):
    return json.dumps({"keys": list(keys)})


async def open_as(bridge, user, tok):
    return await websockets.connect(bridge.ws_url(tok), max_size=None, ping_interval=None)


def test_rotation_step_by_step_refuses_no_live_key_and_keeps_connections(bridge, db):
    k1, k2 = jwk(OLD, "2026-01"), jwk(NEW, "2026-02")
    # the bridge's database sessions: the same backends must serve every step
    sessions = lambda: sorted(r[0] for r in db.sql(
        "SELECT pid FROM pg_stat_activity WHERE usename = 'bridge' AND datname = current_database()"))
    before = sessions()
    assert before
    try:
        set_system(db, jwt_algorithms="HS256,RS256", jwt_jwks=jwks(k1))

        async def go():
            # step 0: only the old key
            a = await open_as(bridge, "a", rs_token("a", OLD, "2026-01"))
            status, _ = raw_upgrade(bridge.port, "/?token=" + rs_token("x", NEW, "2026-02"))
            assert status == 401, "the new key is not in the set yet"

            # step 1: add the new key; tokens signed by either are accepted
            set_system(db, jwt_jwks=jwks(k1, k2))
            b = await open_as(bridge, "b", rs_token("b", OLD, "2026-01"))
            c = await open_as(bridge, "c", rs_token("c", NEW, "2026-02"))

            # step 2: the issuer signs with the new key only; remove the old one
            set_system(db, jwt_jwks=jwks(k2))
            status, body = raw_upgrade(bridge.port, "/?token=" + rs_token("x", OLD, "2026-01"))
            assert status == 401, body
            d = await open_as(bridge, "d", rs_token("d", NEW, "2026-02"))

            # connections made earlier, with the old key, stay open and deliver
            for user, ws in (("a", a), ("b", b), ("c", c), ("d", d)):
                db.sql("SELECT send_ws(%s, %s::jsonb)", user, json.dumps({"to": user}))
                assert await recv_json(ws) == {"to": user}
                await ws.close()
            # the HS256 secret of postgresql.conf keeps working beside the set
            e = await connect(bridge, "e")
            await e.close()
        run(go(), timeout=60)
        assert bridge.proc.poll() is None, "the bridge was never restarted"
        assert sessions() == before, "the bridge's database sessions were never replaced"
    finally:
        set_system(db, jwt_jwks=None, jwt_algorithms=None)


def test_an_invalid_set_is_refused_with_401_and_the_reason_logged_without_keys(bridge, db):
    try:
        set_system(db, jwt_algorithms="HS256,RS256",
                   jwt_jwks='{"keys": [{"kty": "RSA", "kid": "k", "e": "AQAB"}]}')
        status, _ = raw_upgrade(bridge.port, "/?token=" + rs_token("x", OLD, "k"))
        assert status == 401
    finally:
        set_system(db, jwt_jwks=None, jwt_algorithms=None)
