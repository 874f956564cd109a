"""Keypad buffering per reader (passbridge/protocol/keypad_entry.py): digits,
`#` submits, `*` clears, the inter-key timeout, junk and overlong input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from passbridge.core.policy import PIN_DIGITS
from passbridge.protocol.keypad_entry import (
    DEFAULT_INTER_KEY_TIMEOUT,
    MAX_DIGITS,
    TRANSITIONS,
    CodeEntered,
    EntryCleared,
    EntryRejected,
    EntryTimedOut,
    Key,
    KeypadEntry,
    State,
)


def test_a_code_and_hash_in_one_event() -> None:
    entry = KeypadEntry()
    assert entry.feed(b"1234#", now=0.0) == [CodeEntered("1234")]
    assert entry.state is State.IDLE


def test_keys_one_by_one_within_the_timeout() -> None:
    entry = KeypadEntry(inter_key_timeout=5.0)
    for i, key in enumerate(b"2468"):
        assert entry.feed(bytes([key]), now=i * 4.0) == []
        assert entry.typing
    assert entry.feed(b"#", now=16.0) == [CodeEntered("2468")]


def test_osdp_key_codes_for_hash_and_star() -> None:
    """OSDP keypads send ENTER (0x0D) for `#` and DEL (0x7F) for `*`."""
    entry = KeypadEntry()
    assert entry.feed(b"99\x7f", now=0.0) == [EntryCleared()]
    assert entry.feed(b"2468\r", now=0.1) == [CodeEntered("2468")]


def test_star_clears_and_the_code_starts_again() -> None:
    entry = KeypadEntry()
    assert entry.feed(b"12*", now=0.0) == [EntryCleared()]
    assert entry.feed(b"2468#", now=1.0) == [CodeEntered("2468")]


def test_star_and_hash_on_an_empty_buffer_are_no_events() -> None:
    entry = KeypadEntry()
    assert entry.feed(b"*#*##", now=0.0) == []
    assert entry.state is State.IDLE


def test_a_stale_partial_code_is_dropped_and_the_new_key_starts_afresh() -> None:
    entry = KeypadEntry(inter_key_timeout=5.0)
    entry.feed(b"99", now=0.0)
    assert entry.feed(b"2468#", now=5.5) == [EntryTimedOut(), CodeEntered("2468")]


def test_a_key_exactly_at_the_timeout_is_in_time() -> None:
    entry = KeypadEntry(inter_key_timeout=5.0)
    entry.feed(b"24", now=10.0)
    assert entry.feed(b"68#", now=15.0) == [CodeEntered("2468")]


def test_the_timeout_runs_from_the_last_key_not_the_first() -> None:
    entry = KeypadEntry(inter_key_timeout=5.0)
    entry.feed(b"2", now=0.0)
    entry.feed(b"4", now=4.0)
    entry.feed(b"6", now=8.0)
    assert entry.feed(b"8#", now=12.0) == [CodeEntered("2468")]


def test_expire_without_a_key() -> None:
    entry = KeypadEntry(inter_key_timeout=2.0)
    entry.feed(b"12", now=0.0)
    assert entry.expire(now=2.0) == []
    assert entry.expire(now=2.1) == [EntryTimedOut()]
    assert entry.expire(now=9.0) == []
    assert entry.feed(b"#", now=9.0) == []  # nothing left to submit


def test_default_timeout_is_documented_value() -> None:
    assert KeypadEntry().inter_key_timeout == DEFAULT_INTER_KEY_TIMEOUT == 5.0


@pytest.mark.parametrize("timeout", [0.0, -1.0])
def test_timeout_must_be_positive(timeout: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        KeypadEntry(inter_key_timeout=timeout)


def test_max_digits_is_the_longest_pin() -> None:
    assert MAX_DIGITS == PIN_DIGITS[1] == 16


def test_sixteen_digits_are_taken_a_seventeenth_is_refused_not_cut() -> None:
    entry = KeypadEntry()
    assert entry.feed(b"1" * 16 + b"#", now=0.0) == [CodeEntered("1" * 16)]
    outcomes = entry.feed(b"1" * 17 + b"#", now=1.0)
    assert outcomes == [EntryRejected("code longer than 16 digits; 1 more keys of that "
                                      "event dropped")]
    assert entry.state is State.IDLE
    assert entry.feed(b"#", now=1.1) == []  # the 16 digits went with the refusal


def test_overlong_over_several_events() -> None:
    entry = KeypadEntry()
    entry.feed(b"12345678", now=0.0)
    entry.feed(b"12345678", now=1.0)
    assert entry.feed(b"9", now=2.0) == [EntryRejected("code longer than 16 digits")]


def test_junk_byte_refuses_and_drops_the_rest_of_the_event() -> None:
    entry = KeypadEntry()
    assert entry.feed(b"12\x00" + b"34#", now=0.0) == [
        EntryRejected("keypad sent a byte that is no key (0x00); 3 more keys of that "
                      "event dropped")]
    assert entry.state is State.IDLE
    assert entry.feed(b"A", now=0.1) == [EntryRejected("keypad sent a byte that is no key "
                                                       "(0x41)")]


def test_outcomes_and_the_entry_never_show_the_digits() -> None:
    entry = KeypadEntry()
    entry.feed(b"97531", now=0.0)
    assert "97531" not in repr(entry)
    [outcome] = entry.feed(b"#", now=0.1)
    assert "97531" not in repr(outcome)
    assert isinstance(outcome, CodeEntered) and outcome.code == "97531"


def test_the_buffer_is_overwritten_when_an_outcome_ends_it() -> None:
    """The digits do not linger in the bytearray's memory after an outcome."""
    entry = KeypadEntry()
    entry.feed(b"97531", now=0.0)
    buffer = entry._digits  # the one buffer, kept for the entry's life
    snapshot = bytearray(buffer)
    assert snapshot == b"97531"
    entry.feed(b"*", now=0.1)
    assert buffer == b"" and entry._digits is buffer


def test_reset_drops_a_partial_code_silently() -> None:
    entry = KeypadEntry()
    entry.feed(b"12", now=0.0)
    entry.reset()
    assert entry.feed(b"#", now=0.1) == []


def test_every_table_entry_is_reachable_and_idle_has_no_stale_or_extra() -> None:
    assert (State.IDLE, Key.STALE) not in TRANSITIONS
    assert (State.IDLE, Key.EXTRA_DIGIT) not in TRANSITIONS
    assert {state for state, _ in TRANSITIONS} == set(State)


keys = st.lists(st.sampled_from(list(b"0123456789#*\r\x7f") + [0x00, 0x41, 0xFF]),
                max_size=40)


@given(st.lists(st.tuples(keys, st.floats(0, 20)), max_size=10))
def test_any_key_stream_gives_only_valid_codes(events: list[tuple[list[int], float]]) -> None:
    """Whatever is typed, a code that comes out is 1-16 digits and the
    entry is left idle after each outcome but codes in progress."""
    entry = KeypadEntry()
    now = 0.0
    for data, step in events:
        now += step
        for outcome in entry.feed(bytes(data), now):
            if isinstance(outcome, CodeEntered):
                assert outcome.code.isdigit() and 1 <= len(outcome.code) <= MAX_DIGITS
        assert len(entry._digits) <= MAX_DIGITS
        assert entry.typing == bool(entry._digits)
