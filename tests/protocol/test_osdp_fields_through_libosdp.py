"""The sans-I/O OSDP pieces against libosdp 3.2.9 itself: a card framed by
``encode_card`` and keys typed at a libosdp PD reach a libosdp CP as bytes
that ``decode_card_event`` and ``KeypadEntry`` read back, and the feedback
commands' fields go out as given. CP and PD run in this process over an
in-memory byte pipe (field-notes.md), so nothing here depends on a pty.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import osdp
import pytest

from passbridge.bridge.reader_feedback import BuzzerCommand, LedColor, LedCommand
from passbridge.protocol.keypad_entry import CodeEntered, KeypadEntry
from passbridge.protocol.wiegand import CardFormat, CardNumber, decode_card_event, encode_card

pytestmark = pytest.mark.slow  # real libosdp threads and their 20 ms polls

ADDRESS = 101
WAIT = 10  # seconds; generous, only a hung library waits this long


class _Pipe(osdp.Channel):
    """One direction pair of an in-memory byte pipe."""

    def __init__(self, rx: bytearray, tx: bytearray, lock: threading.Lock) -> None:
        super().__init__()
        self._rx, self._tx, self._lock = rx, tx, lock

    def read(self, max_bytes: int) -> bytes:
        with self._lock:
            out = bytes(self._rx[:max_bytes])
            del self._rx[:max_bytes]
            return out

    def write(self, buf: bytes) -> int:
        with self._lock:
            self._tx.extend(buf)
            return len(buf)

    def flush(self) -> None:
        return None


@pytest.fixture(scope="module")
def cp_pd() -> Iterator[tuple[Any, Any]]:
    lock = threading.Lock()
    a, b = bytearray(), bytearray()
    scbk = bytes(range(16))
    flags = [osdp.LibFlag.EnforceSecure]
    caps = osdp.PDCapabilities([(osdp.Capability.LEDControl, 1, 1),
                                (osdp.Capability.AudibleControl, 1, 1)])
    pd = osdp.PeripheralDevice(osdp.PDInfo(ADDRESS, _Pipe(b, a, lock), scbk=scbk, flags=flags),
                               caps, log_level=osdp.LogLevel.Warning)
    cp = osdp.ControlPanel([osdp.PDInfo(ADDRESS, _Pipe(a, b, lock), scbk=scbk, flags=flags)],
                           log_level=osdp.LogLevel.Warning)
    pd.start()
    try:
        cp.start()
        try:
            assert cp.sc_wait(ADDRESS, timeout=WAIT), "secure channel did not come up"
            yield cp, pd
        finally:
            cp.teardown()
    finally:
        pd.teardown()


@pytest.mark.parametrize(("number", "card_format", "facility"), [
    (10001, CardFormat.H10301, 12),
    (10001, CardFormat.WIEGAND34, 300),
    (123456789, CardFormat.RAW, 0),
    (1 << 25, CardFormat.AUTO, 0),
])
def test_a_card_presented_at_the_pd_decodes_at_the_cp(
    cp_pd: tuple[Any, Any], number: int, card_format: CardFormat, facility: int
) -> None:
    cp, pd = cp_pd
    card = encode_card(number, card_format, facility=facility)
    assert pd.submit_event({"event": osdp.Event.CardRead, "reader_no": 0, "direction": 0,
                            **card.event_fields()})
    event = cp.get_event(ADDRESS, timeout=WAIT)
    assert event is not None and event["event"] == osdp.Event.CardRead
    read = decode_card_event(event, card_format)
    assert isinstance(read, CardNumber) and read.number == str(number)


def test_keys_typed_at_the_pd_make_a_code_at_the_cp(cp_pd: tuple[Any, Any]) -> None:
    cp, pd = cp_pd
    entry = KeypadEntry()
    assert pd.submit_event({"event": osdp.Event.KeyPress, "reader_no": 0, "data": b"2468#"})
    event = cp.get_event(ADDRESS, timeout=WAIT)
    assert event is not None and event["event"] == osdp.Event.KeyPress
    assert entry.feed(event["data"], now=0.0) == [CodeEntered("2468")]


def test_feedback_commands_reach_the_pd_as_given(cp_pd: tuple[Any, Any]) -> None:
    cp, pd = cp_pd
    led = LedCommand(LedColor.AMBER, on_ms=500, off_ms=500, duration_ms=15_000)
    beep = BuzzerCommand(on_ms=100, off_ms=100, count=2)
    for command, kind in ((led, osdp.Command.LED), (beep, osdp.Command.Buzzer)):
        assert cp.submit_command(ADDRESS, {"command": kind, **command.osdp_fields()})
        received = pd.get_command(timeout=WAIT)
        assert received == {"command": kind, **command.osdp_fields()}
