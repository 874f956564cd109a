"""The asyncio NFC reader adapter driving nfcpy's reader over udp against the simulated card."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime

import pytest

from passbridge.adapters.nfc_reader import (
    ApduTimeout,
    Decide,
    Exchange,
    FieldLost,
    NfcReader,
    ReaderUnavailable,
    TapHandlerError,
    TapOutcome,
)
from passbridge.clock import ManualClock
from passbridge.sim.nfc_card import CardFaults, SimulatedCard

WAIT = 10.0  # generous bound on waiting for a tap that must come


def applet(command: bytes) -> bytes:
    """Reversed command; INS B0 asks for P1P2 bytes of counting data instead."""
    if len(command) >= 4 and command[1] == 0xB0:
        size = int.from_bytes(command[2:4], "big")
        return bytes(i % 251 for i in range(size)) + b"\x90\x00"
    return command[::-1] + b"\x90\x00"


class Script:
    """A tap handler sending fixed commands and insisting on 9000 answers."""

    def __init__(self, *commands: bytes) -> None:
        self.commands = commands
        self.seen: list[bytes] = []

    def run(self, exchange: Exchange, decide: Decide) -> list[bytes]:
        for command in self.commands:
            answer = exchange(command)
            self.seen.append(answer)
            if answer[-2:] != b"\x90\x00":
                raise ValueError(f"status {answer[-2:].hex() or 'missing'}")
        return self.seen


COMMANDS = (b"\x00\xa4\x04\x00\x02\xa0\x01", b"\x80\x10\x00\x00\x01\x55", b"\x80\x20\x00\x00")


def script_factory(handlers: list[Script], *commands: bytes) -> Callable[[], Script]:
    def make() -> Script:
        handler = Script(*(commands or COMMANDS))
        handlers.append(handler)
        return handler

    return make


@pytest.fixture
def card() -> Iterator[SimulatedCard]:
    with SimulatedCard(applet) as running:
        yield running


@pytest.fixture
async def reader(card: SimulatedCard) -> AsyncIterator[NfcReader[list[bytes]]]:
    """A reader that has read the card once already: its first tap is taken
    here, so a test's own ``tap_once`` can never get that one instead (the
    reader polls as soon as it starts, however slowly the test goes on).
    The APDU timeout is short for the timeout tests, yet well above what an
    echo takes on a loaded machine; the long field hold keeps the card from
    being read again before the test takes it away."""
    async with NfcReader(card.device, script_factory([]), apdu_timeout=1.0,
                         field_hold=WAIT) as running:
        first = await running.tap_once(WAIT)
        assert first.ok, first.error
        yield running


async def retap(card: SimulatedCard, faults: CardFaults | None = None) -> None:
    """Take the card away, wait until it has really left (its session with
    the reader is over: a card put back before that would carry on the old
    session), and tap again."""
    card.leave_field()
    deadline = asyncio.get_running_loop().time() + WAIT
    while card.in_session:
        assert asyncio.get_running_loop().time() < deadline, "the card never left"
        await asyncio.sleep(0.01)
    card.enter_field(faults)


async def test_tap_with_short_and_chained_apdus(card: SimulatedCard) -> None:
    long_command = b"\x80\xca\x00\x00" + bytes(range(200)) * 2  # 404 bytes: chained
    long_answer = bytes.fromhex("00B00190")  # 400 bytes back: chained
    handlers: list[Script] = []
    factory = script_factory(handlers, COMMANDS[0], long_command, long_answer)
    async with NfcReader(card.device, factory) as reader:
        outcome = await reader.tap_once(WAIT)
    assert outcome.ok, outcome.error
    assert outcome.result == [
        COMMANDS[0][::-1] + b"\x90\x00",
        long_command[::-1] + b"\x90\x00",
        bytes(i % 251 for i in range(400)) + b"\x90\x00",
    ]
    assert card.received_apdus() == [COMMANDS[0], long_command, long_answer]
    assert outcome.apdus == 3
    assert outcome.bytes_sent == len(COMMANDS[0]) + len(long_command) + len(long_answer)
    assert outcome.bytes_received == sum(len(r) for r in outcome.result)
    assert outcome.cpu_seconds >= 0
    assert outcome.started_at.tzinfo is not None


async def test_slow_answer_beyond_timeout_fails_then_next_tap_works(
    card: SimulatedCard, reader: NfcReader[list[bytes]]
) -> None:
    await retap(card, CardFaults(delay={1: 3.0}))
    failed = await reader.tap_once(WAIT)
    assert isinstance(failed.error, ApduTimeout)
    assert "INS 10" in str(failed.error)
    assert failed.result is None and failed.apdus == 1

    await retap(card)
    assert (await reader.tap_once(WAIT)).ok


async def test_slow_answer_within_timeout_succeeds(card: SimulatedCard) -> None:
    card.leave_field()
    card.enter_field(CardFaults(delay={0: 0.4}))  # more than the card's FWT: needs S(WTX)
    async with NfcReader(card.device, script_factory([]), apdu_timeout=3.0) as reader:
        outcome = await reader.tap_once(WAIT)
    assert outcome.ok, outcome.error
    assert outcome.apdus == len(COMMANDS)


async def test_field_lost_mid_exchange_then_next_tap_works(
    card: SimulatedCard, reader: NfcReader[list[bytes]]
) -> None:
    await retap(card, CardFaults(drop_after=2))
    failed = await reader.tap_once(WAIT)
    assert isinstance(failed.error, FieldLost)
    assert failed.apdus == 2
    assert not card.in_field

    card.enter_field()
    outcome = await reader.tap_once(WAIT)
    assert outcome.ok, outcome.error
    assert outcome.apdus == len(COMMANDS)


async def test_card_going_silent_is_a_timeout_then_next_tap_works(
    card: SimulatedCard, reader: NfcReader[list[bytes]]
) -> None:
    await retap(card, CardFaults(drop_after=1, drop_mode="silent"))
    failed = await reader.tap_once(WAIT)
    assert isinstance(failed.error, ApduTimeout)
    assert failed.apdus == 1

    card.enter_field()
    assert (await reader.tap_once(WAIT)).ok


@pytest.mark.parametrize(
    ("faults", "seen"),
    [
        (CardFaults(truncate={1: 1}), b"\x55"),  # 55 01 00 00 10 80 90 00 cut to 1 byte
        (CardFaults(truncate={1: 0}), b""),
        (CardFaults(garbage={1: b"\xde\xad\xbe\xef\x6a"}), b"\xde\xad\xbe\xef\x6a"),
    ],
)
async def test_truncated_or_garbage_answer_reaches_handler_and_fails_the_tap(
    card: SimulatedCard, faults: CardFaults, seen: bytes
) -> None:
    handlers: list[Script] = []
    card.leave_field()
    card.enter_field(faults)
    async with NfcReader(card.device, script_factory(handlers)) as reader:
        outcome = await reader.tap_once(WAIT)
    assert isinstance(outcome.error, TapHandlerError)
    assert "ValueError" in str(outcome.error)
    assert handlers[0].seen[-1] == seen
    assert outcome.apdus == 2


async def test_one_tap_is_one_transaction_while_the_card_stays(card: SimulatedCard) -> None:
    async with NfcReader(card.device, script_factory([]), field_hold=30.0) as reader:
        assert (await reader.tap_once(WAIT)).ok
        with pytest.raises(TimeoutError):
            await reader.tap_once(1.0)  # the card stays in the field: no second read
        assert card.activations == 1
        assert reader.taps == 1

        await retap(card)
        assert (await reader.tap_once(WAIT)).ok
        assert card.activations == 2


async def test_hold_off_on_the_injected_clock(card: SimulatedCard) -> None:
    clock = ManualClock(datetime(2027, 3, 1, 8, 0, tzinfo=UTC))
    async with NfcReader(card.device, script_factory([]), holdoff=5.0, clock=clock) as reader:
        first = await reader.tap_once(WAIT)
        assert first.ok and first.started_at == clock.now()

        await retap(card)  # back at once: activated but ignored
        for _ in range(100):
            if card.activations >= 2:
                break
            await asyncio.sleep(0.05)
        assert card.activations >= 2
        with pytest.raises(TimeoutError):
            await reader.tap_once(0.5)
        assert reader.taps == 1

        card.leave_field()
        await asyncio.sleep(0.3)
        clock.advance(6.0)
        card.enter_field()
        assert (await reader.tap_once(WAIT)).ok
        assert reader.taps == 2


class Asking:
    """A handler that asks the event loop for a decision mid-tap, then tells the card."""

    def run(self, exchange: Exchange, decide: Decide) -> bool:
        exchange(b"\x80\x01\x00\x00")
        granted = decide({"user": "alice"})
        exchange(b"\x80\xc9\x00\x00\x01" + (b"\x01" if granted else b"\x00"))
        return granted


async def test_decide_blocks_the_tap_on_the_event_loop(card: SimulatedCard) -> None:
    asked: list[object] = []

    async def decider(request: object) -> bool:
        asked.append(request)
        await asyncio.sleep(0.01)
        return request == {"user": "alice"}

    async with NfcReader(card.device, Asking, decider=decider) as reader:
        outcome = await reader.tap_once(WAIT)
    assert outcome.ok and outcome.result is True
    assert asked == [{"user": "alice"}]
    assert card.received_apdus()[-1] == b"\x80\xc9\x00\x00\x01\x01"


@pytest.mark.parametrize("how", ["slow", "raises", "absent"])
async def test_decide_fails_closed(card: SimulatedCard, how: str) -> None:
    async def slow(request: object) -> bool:
        await asyncio.sleep(5)
        return True

    async def raises(request: object) -> bool:
        raise RuntimeError("core unavailable")

    decider = {"slow": slow, "raises": raises, "absent": None}[how]
    async with NfcReader(card.device, Asking, decider=decider, decide_timeout=0.2) as reader:
        outcome = await reader.tap_once(WAIT)
    assert outcome.ok and outcome.result is False
    assert card.received_apdus()[-1] == b"\x80\xc9\x00\x00\x01\x00"


async def test_continuous_mode_reports_every_tap(card: SimulatedCard) -> None:
    delivered: asyncio.Queue[TapOutcome[list[bytes]]] = asyncio.Queue()

    async def on_tap(outcome: TapOutcome[list[bytes]]) -> None:
        await delivered.put(outcome)

    async with NfcReader(card.device, script_factory([]), on_tap=on_tap, apdu_timeout=1.0,
                         field_hold=WAIT):  # read again only after the test takes it away
        first = await asyncio.wait_for(delivered.get(), WAIT)
        await retap(card, CardFaults(drop_after=0))
        second = await asyncio.wait_for(delivered.get(), WAIT)
        card.enter_field()
        third = await asyncio.wait_for(delivered.get(), WAIT)
    assert [first.ok, second.ok, third.ok] == [True, False, True]
    assert isinstance(second.error, FieldLost) and second.apdus == 0


async def test_stop_waits_for_the_last_taps_callback(card: SimulatedCard) -> None:
    """The service closes the audit log after its readers stop: a tap's
    callback (its audit write) still running must finish first."""
    finished: list[bool] = []

    async def on_tap(outcome: TapOutcome[list[bytes]]) -> None:
        await asyncio.sleep(0.5)  # a slow audit write
        finished.append(outcome.ok)

    reader = NfcReader(card.device, script_factory([]), on_tap=on_tap, field_hold=WAIT)
    await reader.start()
    await reader.tap_once(WAIT)
    await reader.stop()
    assert finished == [True]


async def test_unknown_device_is_reader_unavailable() -> None:
    reader = NfcReader("tty:passbridge-none:pn532", script_factory([]))
    with pytest.raises(ReaderUnavailable, match="cannot open NFC reader"):
        await reader.start()
    assert not reader.running


async def test_reader_stops_cleanly_with_no_card() -> None:
    with SimulatedCard(applet, in_field=False) as card:
        reader = NfcReader(card.device, script_factory([]))
        await reader.start()
        assert reader.running
        await reader.stop()
        assert not reader.running
        assert card.activations == 0
