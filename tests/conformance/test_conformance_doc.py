"""docs/conformance.md stays true: every test module it names exists, and every module here is listed."""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parents[1] / "docs" / "conformance.md"


def test_every_module_the_table_names_exists_and_every_module_is_in_the_table():
    named = set(re.findall(r"`(test_[a-z0-9_]+\.py)`", DOC.read_text()))
    present = {p.name for p in HERE.glob("test_*.py")} - {Path(__file__).name}
    assert named - present == set(), "listed but missing"
    assert present - named == set(), "present but not listed"
