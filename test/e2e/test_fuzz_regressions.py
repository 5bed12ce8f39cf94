"""Inputs found by `make fuzz` (fuzz/corpus/*/regress-*), replayed against the
real bridge so that they stay fixed."""
import subprocess

import pytest

from conftest import BRIDGE


@pytest.mark.parametrize("value", ["16666666666666666666666666666666666MiB", "1e300", "nan", "inf"])
def test_size_too_large_for_its_type_is_refused_not_undefined(tmp_path, value):
    # fuzz_config: "max_message_size = 1666...6" overflowed the double to long
    # long conversion (undefined behaviour) instead of being refused
    cfg = tmp_path / "big.ini"
    cfg.write_text(f"max_message_size = {value}\nping_interval = {value}\n")
    r = subprocess.run([BRIDGE, "-c", str(cfg)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert f'invalid value "{value}" for max_message_size' in r.stderr
