"""Operations: health, metrics, configuration, reload, logs, static files."""
import asyncio
import os
import signal
import subprocess
import time

import pytest

from conftest import (BRIDGE, connect, raw_upgrade, recv_json, run, token, wait_for)


def test_healthz_is_200_with_the_database_and_503_without(bridge, db):
    assert bridge.healthz() == (200, "ok\n")
    db.sql("ALTER ROLE bridge NOLOGIN")
    try:
        db.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
               "WHERE application_name = 'wsnotify-bridge' AND datname = current_database()")
        wait_for(lambda: bridge.healthz()[0] == 503, what="healthz 503")
    finally:
        db.sql("ALTER ROLE bridge LOGIN")
    wait_for(lambda: bridge.healthz()[0] == 200, what="healthz back to 200")


def test_metrics_count_connections_messages_and_refusals(bridge, db):
    raw_upgrade(bridge.port, "/")

    async def go():
        ws = await connect(bridge, "alice")
        db.sql("SELECT send_ws('alice', '{\"abc\": 1}')")
        await recv_json(ws)
        m = bridge.metrics()
        await ws.close()
        return m
    m = run(go())
    assert m["wsnotify_connections"] == 1
    assert m["wsnotify_messages_out_total"] == 1
    assert m["wsnotify_bytes_out_total"] == len('{"abc": 1}')
    assert m['wsnotify_auth_failures_total{reason="missing_token"}'] == 1
    assert m["wsnotify_db_up"] == 1
    assert "wsnotify_delivery_lag_seconds_count" in m
    status, body = bridge.get("/metrics")
    assert "# TYPE wsnotify_messages_out_total counter" in body


def run_bridge(args, timeout=5):
    return subprocess.run([BRIDGE, *args], capture_output=True, text=True, timeout=timeout)


def test_unknown_key_in_file_is_fatal_with_line_and_reason(tmp_path):
    cfg = tmp_path / "bad.ini"
    cfg.write_text("[bridge]\nlisten = 127.0.0.1:0\nno_such_key = 1\n")
    r = run_bridge(["-c", str(cfg)])
    assert r.returncode != 0
    assert f"{cfg}:3: unknown key \"no_such_key\"" in r.stderr


def test_invalid_value_in_file_is_fatal(tmp_path):
    cfg = tmp_path / "bad.ini"
    cfg.write_text("ping_interval = soon\n")
    r = run_bridge(["-c", str(cfg)])
    assert r.returncode != 0
    assert 'invalid value "soon" for ping_interval' in r.stderr


def test_unknown_flag_is_fatal():
    r = run_bridge(["--no-such-flag", "1"])
    assert r.returncode != 0


def test_flag_overrides_file(bridges):
    b = bridges(config="max_connections = 0\n", args=["--max-connections", "5"])
    status, _ = raw_upgrade(b.port, f"/?token={token('alice')}")
    assert status == 101


def test_sighup_applies_a_good_file_and_keeps_settings_on_a_bad_one(bridges):
    b = bridges(config="[bridge]\nmax_connections = 0\n")
    assert raw_upgrade(b.port, f"/?token={token('alice')}")[0] == 503
    with open(b.config, "w") as f:
        f.write("[bridge]\nmax_connections = 10\n")
    b.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in b.log(), what="reload")
    assert raw_upgrade(b.port, f"/?token={token('alice')}")[0] == 101
    with open(b.config, "w") as f:
        f.write("[bridge]\nmax_connections = 0\nbogus = 1\n")
    b.signal(signal.SIGHUP)
    wait_for(lambda: "reload failed, keeping the previous settings" in b.log(), what="reload failure")
    assert "unknown key \"bogus\"" in b.log()
    assert raw_upgrade(b.port, f"/?token={token('alice')}")[0] == 101
    assert b.proc.poll() is None


def test_no_log_line_holds_a_token(bridge, db):
    tok = token("alice")
    raw_upgrade(bridge.port, f"/?token={tok}")
    raw_upgrade(bridge.port, "/", [f"Authorization: Bearer {tok}"])
    raw_upgrade(bridge.port, f"/?x=1&token={tok}x")
    bridge.stop()
    log = bridge.log()
    assert "refused upgrade" in log and "authorized" in log
    assert tok not in log
    assert tok.split(".")[2] not in log


def test_static_directory_is_served(bridges, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>hello</h1>")
    b = bridges(args=["--static", str(site)])
    assert b.get("/") == (200, "<h1>hello</h1>")
    assert b.healthz()[0] == 200
    assert "wsnotify_connections" in b.get("/metrics")[1]


def test_pg_environment_variables_fill_in_the_dsn(bridges, db, cluster):
    b = bridges(args=["--dsn", ""], start=False)
    b.env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(cluster.port), PGDATABASE=db.name,
                 PGUSER="bridge")
    b.start()

    async def go():
        ws = await connect(b, "alice")
        db.sql("SELECT send_ws('alice', '{\"env\": 1}')")
        assert await recv_json(ws) == {"env": 1}
        await ws.close()
    run(go())


def test_metrics_show_the_notify_queue_usage(bridge, db):
    from conftest import wait_for
    wait_for(lambda: "wsnotify_notify_queue_usage" in bridge.metrics(),
             what="the NOTIFY queue gauge after a heartbeat")
    assert 0.0 <= bridge.metrics()["wsnotify_notify_queue_usage"] < 0.01
