"""A wired reader with keypad at one door side: card bits and keys -> decisions.

What an OSDP reader sends (passbridge.adapters.osdp_panel) reaches the core
here, in order, one at a time per reader:

- a card read is decoded by ``protocol.wiegand`` with the reader's card
  format (and facility code, if the reader is told to accept one); a good
  read is the ``card`` factor with the number the site file names, a bad
  one (parity, length, garbled bits) an audited denial
  ``unknown_credential`` whose ``detail`` says why. Never a grant.
- keys go through the reader's ``protocol.keypad_entry`` buffer (digits,
  ``#`` submits, ``*`` clears, the inter-key timeout on the injectable
  clock); an entered code is the ``pin`` factor, junk keys an audited
  denial ``unknown_credential``. A cleared or stale entry is no decision.

Each decision is also offered to whoever waits for the next one at this
reader (:meth:`WiredReader.next_decision`: ``sim`` and the scenario runner,
which present a card at the simulated reader and want its answer). What the
reader shows for a decision is not decided here: bridge.reader_feedback
maps every decision at the door side, whatever path made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from passbridge.clock import Clock
from passbridge.controller import DoorController
from passbridge.core.decision import Decision
from passbridge.core.model import Factor, Reason, Side
from passbridge.protocol.keypad_entry import (
    DEFAULT_INTER_KEY_TIMEOUT,
    CodeEntered,
    EntryCleared,
    EntryRejected,
    EntryTimedOut,
    KeypadEntry,
)
from passbridge.protocol.wiegand import CardFormat, CardNumber, decode_card_event

__all__ = ["ReaderSettings", "WiredReader"]

log = logging.getLogger(__name__)

QUEUE_LIMIT = 64
"""Reads and key reports waiting for their decision; more are dropped (logged):
a reader flooding the bus must not grow memory without bound."""


@dataclass(frozen=True, slots=True)
class ReaderSettings:
    """Per-reader options (``serve --osdp ...,format=h10301,keys=5``)."""

    card_format: CardFormat = CardFormat.AUTO
    facility: int | None = None
    """Accept only this facility code (parity-framed formats); None: any."""
    inter_key_timeout: float = DEFAULT_INTER_KEY_TIMEOUT


@dataclass(frozen=True, slots=True)
class _Card:
    fields: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class _Keys:
    keys: bytes


class WiredReader:
    """One reader's inputs, decided in order through the controller."""

    def __init__(self, controller: DoorController, clock: Clock, door: str, side: Side,
                 settings: ReaderSettings | None = None, *, name: str = "") -> None:
        self.controller = controller
        self.clock = clock
        self.door = door
        self.side = side
        self.settings = settings or ReaderSettings()
        self.name = name or f"{door}/{side.value}"
        self._entry = KeypadEntry(self.settings.inter_key_timeout)
        self._inbox: asyncio.Queue[_Card | _Keys] = asyncio.Queue(QUEUE_LIMIT)
        self._waiters: list[asyncio.Future[Decision]] = []
        self._task: asyncio.Task[None] | None = None
        self._current: asyncio.Future[None] | None = None

    # -- inputs (event loop, from the panel's callback) ---------------------------------

    def card(self, fields: Mapping[str, object]) -> None:
        self._put(_Card(fields))

    def keys(self, keys: bytes) -> None:
        self._put(_Keys(keys))

    @property
    def typing(self) -> bool:
        """A partial entry code is buffered (its digits are not told)."""
        return self._entry.typing

    def went_offline(self) -> None:
        """The reader left: a half-typed code is not kept for whoever comes next."""
        self._entry.reset()

    def _put(self, item: _Card | _Keys) -> None:
        try:
            self._inbox.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("wired reader %s: %d inputs waiting; one dropped", self.name,
                        QUEUE_LIMIT)

    # -- decisions --------------------------------------------------------------------------

    def next_decision(self) -> asyncio.Future[Decision]:
        """A future for the next decision this reader's input makes."""
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        return future

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"wired reader {self.name}")

    async def stop(self) -> None:
        """Finish the input being decided (its audit record is written), drop the rest."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._current is not None and not self._current.done():
            with contextlib.suppress(Exception):
                await self._current
        self._entry.reset()
        for future in self._waiters:
            future.cancel()
        self._waiters.clear()

    async def _run(self) -> None:
        while True:
            item = await self._inbox.get()
            # Shielded: a stop while a decision is being recorded lets it finish.
            self._current = asyncio.ensure_future(self._decide(item))
            try:
                await asyncio.shield(self._current)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("wired reader %s: an input could not be decided", self.name)

    async def _decide(self, item: _Card | _Keys) -> None:
        if isinstance(item, _Card):
            await self._card(item.fields)
        else:
            await self._keys(item.keys)

    async def _card(self, fields: Mapping[str, object]) -> None:
        s = self.settings
        read = decode_card_event(fields, s.card_format, facility=s.facility)
        if isinstance(read, CardNumber):
            decision = await self.controller.card(self.door, read.number, self.side,
                                                  read=f"wired reader {self.name}: "
                                                       f"{read.describe()}")
        else:
            decision = await self.controller.bridge_failure(
                self.door, self.side, Factor.CARD, Reason.UNKNOWN_CREDENTIAL,
                f"wired reader {self.name}: {read.detail}")
        self._answered(decision)

    async def _keys(self, keys: bytes) -> None:
        for outcome in self._entry.feed(keys, self.clock.elapsed()):
            if isinstance(outcome, CodeEntered):
                decision = await self.controller.pin(self.door, outcome.code, self.side)
            elif isinstance(outcome, EntryRejected):
                decision = await self.controller.bridge_failure(
                    self.door, self.side, Factor.PIN, Reason.UNKNOWN_CREDENTIAL,
                    f"wired reader {self.name} keypad: {outcome.detail}")
            else:
                what = "cleared" if isinstance(outcome, EntryCleared) else "timed out"
                assert isinstance(outcome, (EntryCleared, EntryTimedOut))
                log.info("wired reader %s: a partial entry code was %s", self.name, what)
                continue
            self._answered(decision)

    def _answered(self, decision: Decision) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(decision)
