"""bench/trigger_cost.py's arithmetic and summary keys, without a cluster:
/usr/bin/python3 -m pytest -q bench/test_trigger_cost.py"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trigger_cost  # noqa: E402


def test_alternate_reverses_the_order_every_round():
    order = []
    runs = {n: (lambda n=n: order.append(n) or len(order)) for n in "abc"}
    got = trigger_cost.alternate(runs, 3)
    assert order == list("abccbaabc")
    assert got == {"a": [1, 6, 7], "b": [2, 5, 8], "c": [3, 4, 9]}


def test_alternate_flip_starts_reversed():
    order = []
    trigger_cost.alternate({n: (lambda n=n: order.append(n) or 1) for n in "ab"}, 2, flip=True)
    assert order == list("baab")


def test_overhead_is_mean_against_mean_and_positive_when_slower():
    pct = trigger_cost.overhead_pct({"plain": [100, 120], "t": [88, 110], "u": [121, 121]})
    assert pct == {"t": 10.0, "u": -10.0}


def result(pct_off, pct_on):
    return {"overhead_pct": {"off": pct_off, "on": pct_on}}


def test_overhead_summary_keeps_the_worst_as_the_old_key_and_each_count():
    r = result({"8": {"send_ws": 4.0, "floor": 2.0}, "32": {"send_ws": 9.5, "floor": 1.0}},
               {"8": {"send_ws": 12.0, "floor": 3.0}, "32": {"send_ws": 7.0, "floor": 5.0}})
    assert trigger_cost.overhead_summary(r, "send_ws") == {
        "trigger_overhead_pct": 9.5, "trigger_overhead_pct_8": 4.0,
        "trigger_overhead_pct_32": 9.5, "trigger_overhead_sync_on_pct": 12.0,
        "trigger_overhead_sync_on_pct_8": 12.0, "trigger_overhead_sync_on_pct_32": 7.0}


def test_overhead_summary_of_a_trigger_not_measured_is_empty():
    r = result({"8": {"send_ws": 4.0}}, {"8": {"send_ws": 5.0}})
    assert trigger_cost.overhead_summary(r, "pg_notify") == {}


def test_scaling_summary_reports_the_largest_count_and_both_series():
    single = {"16": {"send_ws": [150], "insert": [200], "pct": 75.0},
              "8": {"send_ws": [90, 110], "insert": [100], "pct": 100.0},
              "32": {"send_ws": [240], "insert": [300], "pct": 80.0}}
    got = trigger_cost.scaling_summary(single)
    assert got["send_ws_sync_on_vs_insert_pct"] == 80.0
    assert got["send_ws_sync_on_vs_insert_pct_16"] == 75.0
    assert [got[f"send_ws_sync_on_tps_{c}"] for c in (8, 16, 32)] == [100, 150, 240]
    assert [got[f"insert_sync_on_tps_{c}"] for c in (8, 16, 32)] == [100, 200, 300]
    assert got["send_ws_sync_on_tps_growth_8_to_32"] == 2.4
    assert got["insert_sync_on_tps_growth_8_to_32"] == 3.0
