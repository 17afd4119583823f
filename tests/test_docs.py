"""Docs generated from the code stay equal to it."""

import re
from pathlib import Path

from nsllm.isa.registers import markdown_table

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_register_table_matches_the_map():
    text = (DOCS / "runtime.md").read_text()
    found = re.search(r"<!-- register-table:begin -->\n(.*?)\n<!-- register-table:end -->", text,
                      re.S)
    assert found, "docs/runtime.md lost its register-table markers"
    assert found[1] == markdown_table(), (
        "docs/runtime.md's register table differs from nsllm.isa.REGISTER_MAP: paste "
        "nsllm.isa.registers.markdown_table() between the markers")


def test_descriptor_table_matches_the_fields():
    from nsllm.isa.opcodes import descriptor_markdown_table

    text = (DOCS / "formats.md").read_text()
    found = re.search(r"<!-- descriptor-table:begin -->\n(.*?)\n<!-- descriptor-table:end -->",
                      text, re.S)
    assert found, "docs/formats.md lost its descriptor-table markers"
    assert found[1] == descriptor_markdown_table(), (
        "docs/formats.md's descriptor table differs from nsllm.isa.DESCRIPTOR_FIELDS: paste "
        "nsllm.isa.opcodes.descriptor_markdown_table() between the markers")
