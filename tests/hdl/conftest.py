"""Shared settings for the HDL tests.

Components built only to read their widths or layouts (never simulated), or rejected by their
argument checks, would warn ``UnusedElaboratable`` when garbage-collected; that is expected in
these tests, so the warning is silenced.
"""

import warnings

from amaranth.hdl import UnusedElaboratable

warnings.filterwarnings("ignore", category=UnusedElaboratable)


def pytest_configure(config):
    config.addinivalue_line("filterwarnings", "ignore::amaranth.hdl.UnusedElaboratable")
