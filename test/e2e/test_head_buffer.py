"""The gate reads a request head into a buffer that starts at 1 KiB and grows up
to max_header_size (GATE_HEAD_START in bridge/gate.c): heads of every size under
the limit upgrade, whatever the growth steps they cross."""
import pytest

from conftest import raw_upgrade, token, upgrade_request


@pytest.mark.parametrize("size", [1000, 1023, 1024, 1025, 2047, 2048, 2049, 4097, 8000, 8192])
def test_heads_under_max_header_size_upgrade(bridge, size):
    target = f"/?token={token('alice')}"
    pad = size - len(upgrade_request(bridge.port, target, ["X-Pad: "]))
    headers = ["X-Pad: " + "p" * pad]
    # the very request raw_upgrade sends, so the sizes stay on the boundaries
    assert len(upgrade_request(bridge.port, target, headers)) == size
    status, _ = raw_upgrade(bridge.port, target, headers)
    assert status == 101
