"""``DoorCore._decide`` lists the steps of docs/decisions.md "Order of checks
in a decision", with the same numbers and names in the same order, so that
the code can be held against the document line by line."""

from __future__ import annotations

import inspect
import re

from passbridge.core.engine import DoorCore
from tests.conftest import PROJECT

DECISIONS = PROJECT / "docs" / "decisions.md"


def _documented_steps() -> list[tuple[int, str]]:
    text = DECISIONS.read_text(encoding="utf-8")
    section = text.split("## Order of checks in a decision", 1)[1].split("\n## ", 1)[0]
    steps = []
    for number, rest in re.findall(r"^(\d+)\. (.+)$", section, flags=re.MULTILINE):
        bold = re.match(r"\*\*(.+?)\*\*", rest)
        steps.append((int(number), bold.group(1) if bold else rest.split()[0]))
    return steps


def _coded_steps() -> list[tuple[int, str]]:
    source = inspect.getsource(DoorCore._decide)
    return [(int(n), name.strip()) for n, name in re.findall(r"# (\d+)\. ([^:(\n]+)", source)]


def test_decide_lists_the_documented_steps_in_order() -> None:
    documented = _documented_steps()
    assert [n for n, _ in documented] == list(range(1, 9))
    coded = _coded_steps()
    assert [n for n, _ in coded] == [n for n, _ in documented]
    for (_, doc_name), (_, code_name) in zip(documented, coded, strict=True):
        assert code_name.lower().startswith(doc_name.lower()), (doc_name, code_name)
