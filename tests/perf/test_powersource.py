"""Measured board power (nsllm.perf.powersource) against a fake sysfs tree and fake commands."""

import sys
import time

import pytest

from nsllm.perf.powersource import (
    CommandSource,
    HwmonSource,
    PowerSampler,
    PowerSourceError,
    measure,
    parse_power_source,
)


def test_hwmon_power_input_in_microwatts(tmp_path):
    hw = tmp_path / "hwmon3"
    hw.mkdir()
    (hw / "name").write_text("ina226\n")
    (hw / "power1_input").write_text("7250000\n")
    assert HwmonSource(hw).read_watts() == pytest.approx(7.25)
    assert HwmonSource(hw / "power1_input").read_watts() == pytest.approx(7.25)
    assert isinstance(parse_power_source(f"hwmon:{hw}"), HwmonSource)
    assert isinstance(parse_power_source(str(hw)), HwmonSource)


def test_hwmon_voltage_times_current(tmp_path):
    hw = tmp_path / "hwmon0"
    hw.mkdir()
    (hw / "in1_input").write_text("800\n")  # mV
    (hw / "curr1_input").write_text("10000\n")  # mA
    (hw / "in2_input").write_text("1800\n")
    (hw / "curr2_input").write_text("500\n")
    assert HwmonSource(hw).read_watts() == pytest.approx(0.8 * 10 + 1.8 * 0.5)


def test_hwmon_errors_name_the_problem(tmp_path):
    with pytest.raises(PowerSourceError, match="no hwmon path"):
        HwmonSource(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    with pytest.raises(PowerSourceError, match="no power"):
        HwmonSource(tmp_path / "bad").read_watts()
    (tmp_path / "power1_input").write_text("n/a")
    with pytest.raises(PowerSourceError, match="cannot read a number"):
        HwmonSource(tmp_path / "power1_input").read_watts()


@pytest.mark.parametrize("text, watts", [
    ("Voltage(V):\t0.800000\nCurrent(A):\t10.250000\nPower(W):\t8.200000\n", 8.2),
    ("VCCINT power: 8200 mW\n", 8.2),
    ("Power(mW): 950\n", 0.95),
    ("Voltage: 0.8\nCurrent: 10\n", 8.0),
    ("8.5\n", 8.5),
])
def test_command_output_parsing(text, watts):
    assert CommandSource.parse(text) == pytest.approx(watts)


def test_command_output_without_watts_is_an_error():
    with pytest.raises(PowerSourceError, match="cannot find watts"):
        CommandSource.parse("rail VCCINT 1 2 3 ok\n")


def test_a_fake_sc_app_command(tmp_path):
    script = tmp_path / "sc_app.py"
    script.write_text("print('Voltage(V):\\t0.800000')\nprint('Current(A):\\t9.000000')\n"
                      "print('Power(W):\\t7.200000')\n")
    src = parse_power_source(f"cmd:{sys.executable} {script} -c getpower -t VCCINT")
    assert isinstance(src, CommandSource)
    assert src.read_watts() == pytest.approx(7.2)
    failing = CommandSource(f"{sys.executable} -c 'import sys; sys.exit(3)'")
    with pytest.raises(PowerSourceError, match="exit 3"):
        failing.read_watts()
    with pytest.raises(PowerSourceError, match="not found"):
        CommandSource("no-such-power-tool-xyz").read_watts()


def test_bad_specs():
    with pytest.raises(PowerSourceError, match="hwmon:"):
        parse_power_source("somewhere-that-does-not-exist")


class Rising:
    """A power source whose reading depends on whether a workload runs."""

    name = "fake"

    def __init__(self):
        self.running = False

    def read_watts(self):
        return 12.0 if self.running else 5.0


def test_measure_subtracts_idle_and_counts_samples():
    src = Rising()

    def work():
        src.running = True
        time.sleep(0.25)
        src.running = False
        return "done"

    result, m = measure(src, work, idle_seconds=0.1, interval=0.02)
    assert result == "done"
    assert m.idle_w == pytest.approx(5.0)
    assert m.idle_samples >= 3 and m.running_samples >= 5
    assert 5.0 < m.running_w <= 12.0
    assert m.dynamic_w == pytest.approx(m.running_w - 5.0)
    assert m.as_dict()["dynamic_w"] > 4


def test_sampler_reports_a_dead_source_at_once():
    class Dead:
        def read_watts(self):
            raise PowerSourceError("no answer")

    with pytest.raises(PowerSourceError, match="no answer"), PowerSampler(Dead()):
        pass
