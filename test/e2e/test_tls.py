"""wss:// with --tls-cert-file/--tls-key-file."""
import asyncio
import ssl
import subprocess
import urllib.request

import pytest
import websockets

from conftest import raw_upgrade, recv_json, run, token, wait_for


@pytest.fixture
def cert(tmp_path):
    key, crt = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=127.0.0.1", "-keyout", str(key), "-out", str(crt), "-days", "1"],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context(cafile=str(crt))
    ctx.check_hostname = False
    return str(crt), str(key), ctx


def https_get(port, path, ctx):
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=ctx, timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def test_tls_serves_wss_delivery_and_refusals(bridges, db, cert):
    crt, key, ctx = cert
    b = bridges(args=["--tls-cert-file", crt, "--tls-key-file", key], start=False)
    b.start(wait=False)
    wait_for(lambda: https_get(b.port, "/healthz", ctx)[0] == 200, what="https healthz")

    async def go():
        ws = await websockets.connect(f"wss://127.0.0.1:{b.port}/?token={token('alice')}",
                                      ssl=ctx, max_size=None)
        db.sql("SELECT send_ws('alice', jsonb_build_object('big', repeat('x', 1000000)))")
        assert len((await recv_json(ws, timeout=10))["big"]) == 1000000
        await ws.close()
        with pytest.raises(websockets.InvalidStatusCode) as e:
            await websockets.connect(f"wss://127.0.0.1:{b.port}/?token=nope", ssl=ctx)
        assert e.value.status_code == 401
    run(go())
    assert "wsnotify_messages_out_total 1" in https_get(b.port, "/metrics", ctx)[1]


def test_tls_with_an_unreadable_key_is_fatal(bridges, cert, tmp_path):
    crt, _, _ = cert
    b = bridges(args=["--tls-cert-file", crt, "--tls-key-file", str(tmp_path / "missing.pem")],
                start=False)
    b.start(wait=False)
    assert b.wait(10) != 0
    assert "cannot listen with TLS" in b.log()


def test_tls_listens_on_the_configured_address_only(bridges, cert):
    """lws 4.1 bound an IPv4 --listen address to [::] (every interface)."""
    import socket
    crt, key, ctx = cert
    b = bridges(args=["--tls-cert-file", crt, "--tls-key-file", key], start=False)
    b.start(wait=False)
    wait_for(lambda: https_get(b.port, "/healthz", ctx)[0] == 200, what="https healthz")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", b.port), timeout=2).close()


def test_tls_listens_on_a_bracketed_ipv6_address(bridges, cert):
    """listen = [v6]:port reached lws with its brackets: the TLS path parsed it its own way."""
    crt, key, ctx = cert
    b = bridges(args=["--tls-cert-file", crt, "--tls-key-file", key], start=False)
    b.args += ["--listen", f"[::1]:{b.port}"]
    b.start(wait=False)

    def get():
        try:
            with urllib.request.urlopen(f"https://[::1]:{b.port}/healthz", context=ctx,
                                        timeout=3) as r:
                return r.status
        except OSError:
            return 0
    wait_for(lambda: get() == 200 or b.proc.poll() is not None, what="https healthz on [::1]")
    assert b.proc.poll() is None, b.log()
    assert "listening with TLS on [::1]" in b.log()
