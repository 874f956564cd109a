"""End to end taps: the Aliro reader transaction against the phone applet, over nfcpy udp.

The reader side is passbridge's NfcReader on nfcpy's unchanged reader stack;
the phone side is the simulated ISO-DEP card running PhoneApplet.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from passbridge.adapters.nfc_reader import Decide, Exchange, FieldLost, NfcReader
from passbridge.bridge.reader_driver import (
    InMemoryCredentials,
    new_transaction,
    reader_steps,
    run_reader,
)
from passbridge.protocol.aliro_crypto import generate_ephemeral
from passbridge.protocol.aliro_phone import PhoneApplet
from passbridge.protocol.aliro_reader import Authenticated, Failed, Finished, ReaderIdentity
from passbridge.protocol.exchange_status import ReaderStatus
from passbridge.sim.nfc_card import CardFaults, SimulatedCard

WAIT = 10.0


@dataclass(frozen=True)
class AliroResult:
    authenticated: Authenticated | None
    granted: bool | None
    end: Finished | Failed


class AliroTap:
    """The glue a bridge runs per tap: the reader driver with exchange/decide."""

    def __init__(self, identity: ReaderIdentity, credentials: InMemoryCredentials) -> None:
        self.identity = identity
        self.credentials = credentials

    def run(self, exchange: Exchange, decide: Decide) -> AliroResult:
        tx = new_transaction(self.identity)
        granted: list[bool] = []

        def report(event: Authenticated | Failed) -> int | None:
            if isinstance(event, Failed):
                return None
            granted.append(decide(event))
            return int(ReaderStatus.STATE_UNSECURED if granted[-1]
                       else ReaderStatus.INVALID_ACCESS_RIGHTS)

        outcome = run_reader(reader_steps(tx, self.credentials), exchange, report)
        if outcome.authenticated is None:
            assert outcome.failure is not None
            return AliroResult(None, None, outcome.failure)
        end = Finished() if outcome.finished else outcome.failure
        assert end is not None
        return AliroResult(outcome.authenticated, granted[-1], end)


@dataclass
class Site:
    identity: ReaderIdentity
    credentials: InMemoryCredentials
    phone: PhoneApplet


@pytest.fixture
def site() -> Site:
    group, sub = secrets.token_bytes(16), secrets.token_bytes(16)
    identity = ReaderIdentity(generate_ephemeral(), group, sub)
    phone = PhoneApplet(generate_ephemeral(), identity.public_key)
    credentials = InMemoryCredentials()
    credentials.enrol("cred-alice", phone.credential_public_key)
    return Site(identity, credentials, phone)


@pytest.fixture
def card(site: Site) -> Iterator[SimulatedCard]:
    with SimulatedCard(site.phone.process) as running:
        yield running


async def grant_alice(request: object) -> bool:
    return isinstance(request, Authenticated) and request.credential_id == "cred-alice"


async def retap(card: SimulatedCard, faults: CardFaults | None = None) -> None:
    card.leave_field()
    await asyncio.sleep(0.3)
    card.enter_field(faults)


async def test_standard_then_fast_tap(site: Site, card: SimulatedCard) -> None:
    def factory() -> AliroTap:
        return AliroTap(site.identity, site.credentials)

    async with NfcReader(card.device, factory, decider=grant_alice) as reader:
        first = await reader.tap_once(WAIT)
        await retap(card)
        second = await reader.tap_once(WAIT)

    for outcome in (first, second):
        assert outcome.ok, outcome.error
        assert outcome.result is not None
        assert isinstance(outcome.result.end, Finished)
        assert outcome.result.granted is True
    assert first.result is not None and second.result is not None
    assert first.result.authenticated is not None and second.result.authenticated is not None
    assert first.result.authenticated.flow == "standard"
    assert second.result.authenticated.flow == "fast"
    assert first.result.authenticated.credential_id == "cred-alice"
    assert (first.apdus, second.apdus) == (4, 3)
    assert site.phone.last_door_status is True
    assert first.result.authenticated.transaction_id != second.result.authenticated.transaction_id


async def test_denied_decision_reaches_the_phone(site: Site, card: SimulatedCard) -> None:
    async def deny(request: object) -> bool:
        return False

    async with NfcReader(
        card.device, lambda: AliroTap(site.identity, site.credentials), decider=deny
    ) as reader:
        outcome = await reader.tap_once(WAIT)
    assert outcome.ok and outcome.result is not None
    assert outcome.result.granted is False
    assert site.phone.last_door_status is False


async def test_unenrolled_phone_fails_without_a_decision(site: Site, card: SimulatedCard) -> None:
    site.credentials.revoke("cred-alice")
    asked: list[object] = []

    async def decider(request: object) -> bool:
        asked.append(request)
        return True

    async with NfcReader(
        card.device, lambda: AliroTap(site.identity, site.credentials), decider=decider
    ) as reader:
        outcome = await reader.tap_once(WAIT)
    assert outcome.ok and outcome.result is not None
    assert isinstance(outcome.result.end, Failed)
    assert outcome.result.authenticated is None
    assert asked == []


async def test_truncated_phone_answer_fails_the_transaction(
    site: Site, card: SimulatedCard
) -> None:
    card.leave_field()
    card.enter_field(CardFaults(truncate={1: 20}))  # AUTH0 answer cut short
    async with NfcReader(
        card.device, lambda: AliroTap(site.identity, site.credentials), decider=grant_alice
    ) as reader:
        outcome = await reader.tap_once(WAIT)
    assert outcome.result is not None
    assert isinstance(outcome.result.end, Failed)
    assert outcome.result.granted is None


async def test_field_lost_mid_aliro_then_next_tap_grants(site: Site, card: SimulatedCard) -> None:
    card.leave_field()
    card.enter_field(CardFaults(drop_after=2))  # gone after SELECT and AUTH0
    async with NfcReader(
        card.device, lambda: AliroTap(site.identity, site.credentials), decider=grant_alice
    ) as reader:
        lost = await reader.tap_once(WAIT)
        card.enter_field()
        again = await reader.tap_once(WAIT)
    assert isinstance(lost.error, FieldLost)
    assert lost.result is None
    assert again.ok and again.result is not None and again.result.granted is True
