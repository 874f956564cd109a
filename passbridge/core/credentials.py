"""How a presented credential appears in decisions and logs."""

from __future__ import annotations


def mask_card(number: str) -> str:
    """A badge number with all but its last few digits hidden.

    Shows at most four trailing characters and never more than a third of
    the number, so a log line identifies a card to an operator without
    being a copy of it.
    """
    shown = min(4, len(number) // 3)
    return "*" * (len(number) - shown) + number[len(number) - shown :]
