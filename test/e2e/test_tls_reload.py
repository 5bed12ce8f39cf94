"""SIGHUP reloads the TLS certificate and key without dropping connections."""
import asyncio
import shutil
import signal
import socket
import ssl
import subprocess

import websockets

from conftest import recv_json, run, token, wait_for


def make_pair(dirpath, name):
    key, crt = dirpath / f"{name}.key", dirpath / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={name}",
                    "-keyout", str(key), "-out", str(crt), "-days", "1"],
                   check=True, capture_output=True)
    return crt, key


def any_cert_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def served_cert(port):
    """DER of the certificate a fresh handshake gets."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with any_cert_ctx().wrap_socket(s) as t:
            return t.getpeercert(binary_form=True)


def der(crt):
    return ssl.PEM_cert_to_DER_cert(crt.read_text())


def test_sighup_loads_a_renewed_certificate_and_keeps_open_connections(bridges, db, tmp_path):
    live_crt, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    a_crt, a_key = make_pair(tmp_path, "a")
    b_crt, b_key = make_pair(tmp_path, "b")
    c_crt, _ = make_pair(tmp_path, "c")
    shutil.copy(a_crt, live_crt)
    shutil.copy(a_key, live_key)
    b = bridges(args=["--tls-cert-file", str(live_crt), "--tls-key-file", str(live_key)],
                start=False)
    b.start(wait=False)
    wait_for(lambda: _try(served_cert, b.port) == der(a_crt), what="serving certificate a")
    # the TLS listener is up before the database session: upgrades get 503 until it is
    wait_for(lambda: " started: " in b.log(), what="bridge started")

    async def go():
        ws = await websockets.connect(f"wss://127.0.0.1:{b.port}/?token={token('alice')}",
                                      ssl=any_cert_ctx())
        # renew in place, as certbot does, and reload
        shutil.copy(b_crt, live_crt)
        shutil.copy(b_key, live_key)
        b.signal(signal.SIGHUP)
        wait_for(lambda: "TLS certificate reloaded" in b.log(), what="reload logged")
        assert served_cert(b.port) == der(b_crt)
        db.sql("SELECT send_ws('alice', '{\"after\": \"reload\"}')")
        assert await recv_json(ws) == {"after": "reload"}      # the old session lives on
        # a mismatched pair (c's certificate, b's key) changes nothing
        shutil.copy(c_crt, live_crt)
        b.signal(signal.SIGHUP)
        wait_for(lambda: "TLS reload failed, keeping the previous certificate" in b.log(),
                 what="bad pair refused")
        assert served_cert(b.port) == der(b_crt)
        ws2 = await websockets.connect(f"wss://127.0.0.1:{b.port}/?token={token('bob')}",
                                       ssl=any_cert_ctx())
        db.sql("SELECT send_ws('bob', '{\"still\": \"serving\"}')")
        assert await recv_json(ws2) == {"still": "serving"}
        await ws.close()
        await ws2.close()
    run(go())


def _try(fn, *args):
    try:
        return fn(*args)
    except OSError:
        return None
