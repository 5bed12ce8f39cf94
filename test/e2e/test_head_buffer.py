"""The gate reads a request head into a buffer that starts at 1 KiB and grows up
to max_header_size (GATE_HEAD_START in bridge/gate.c): heads of every size under
the limit upgrade, whatever the growth steps they cross."""
import pytest

from conftest import raw_upgrade, token


@pytest.mark.parametrize("size", [1000, 1023, 1024, 1025, 2047, 2048, 2049, 4097, 8000, 8192])
def test_heads_under_max_header_size_upgrade(bridge, size):
    target = f"/?token={token('alice')}"
    base = (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{bridge.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nX-Pad: \r\n\r\n")
    pad = size - len(base)
    assert pad >= 0
    status, _ = raw_upgrade(bridge.port, target, ["X-Pad: " + "p" * pad])
    assert status == 101
