"""docs/performance.md's coefficient table is the code's (one table, nsllm.perf.power)."""

import re
from pathlib import Path

from nsllm.perf.power import coefficient_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "performance.md"


def test_the_coefficient_table_in_the_docs_is_the_codes():
    text = DOC.read_text()
    found = re.search(r"<!-- power-coefficients:begin -->\n(.*?)\n<!-- power-coefficients:end -->",
                      text, re.S)
    assert found, "docs/performance.md lost its power-coefficients markers"
    assert found[1] == coefficient_table(), (
        "docs/performance.md's coefficient table differs from nsllm.perf.power.COEFFICIENTS: "
        "paste nsllm.perf.power.coefficient_table() between the markers")
