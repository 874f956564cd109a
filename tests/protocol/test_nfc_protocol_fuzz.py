"""Hypothesis fuzz of both roles' parsing: random and mutated bytes at every step."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from passbridge.bridge.reader_driver import InMemoryCredentials, settle
from passbridge.protocol.aliro_crypto import private_key_from_scalar, public_key_bytes
from passbridge.protocol.aliro_phone import PhoneApplet
from passbridge.protocol.aliro_reader import (
    Authenticated,
    Event,
    Failed,
    Finished,
    ReaderIdentity,
    ReaderTransaction,
    SendCommand,
)
from passbridge.protocol.exchange_status import ReaderStatus


def scalar(label: str) -> bytes:
    return hashlib.sha256(b"fuzz " + label.encode()).digest()


READER_KEY = private_key_from_scalar(scalar("reader"))
PHONE_KEY = private_key_from_scalar(scalar("phone"))
IDENTITY = ReaderIdentity(READER_KEY, bytes(16), b"\x01" * 16)
TXID = scalar("txid")[:16]


@dataclass(frozen=True)
class Transcript:
    flow: str
    answers: tuple[bytes, ...]  # the phone's genuine answer at each step
    kpersistent: bytes | None


class Reader:
    """A reader transaction with the key store answers the bridge's driver gives it."""

    def __init__(self, t: Transcript) -> None:
        self.credentials = InMemoryCredentials({public_key_bytes(PHONE_KEY): "cred"})
        if t.kpersistent is not None:
            self.credentials.remember_persistent_key("cred", public_key_bytes(PHONE_KEY),
                                                     t.kpersistent)
        self.transaction = ReaderTransaction(
            IDENTITY, prefer_fast=t.flow == "fast",
            ephemeral_private_key=private_key_from_scalar(scalar("reader eph")),
            transaction_id=TXID, deterministic_signatures=True)

    def start(self) -> bytes:
        return self.transaction.start()

    def receive(self, answer: bytes) -> Event:
        return settle(self.transaction, self.transaction.receive(answer), self.credentials)

    def door_status(self, status: int) -> bytes:
        return self.transaction.door_status(status)

    @property
    def done(self) -> bool:
        return self.transaction.done


def make_reader(t: Transcript) -> Reader:
    return Reader(t)


def record(flow: str, store: dict[bytes, bytes], kpersistent: bytes | None) -> Transcript:
    phone = PhoneApplet(PHONE_KEY, IDENTITY.public_key, kpersistent_store=store,
                        ephemeral_private_key=private_key_from_scalar(scalar("phone eph")),
                        deterministic_signatures=True)
    t = Transcript(flow, (), kpersistent)
    reader = make_reader(t)
    command = reader.start()
    answers: list[bytes] = []
    while True:
        answer = phone.process(command)
        answers.append(answer)
        event = reader.receive(answer)
        if isinstance(event, SendCommand):
            command = event.apdu
        elif isinstance(event, Authenticated):
            assert event.flow == flow
            command = reader.door_status(ReaderStatus.STATE_UNSECURED)
        else:
            assert isinstance(event, Finished), event
            break
    return Transcript(flow, tuple(answers), kpersistent)


STORE: dict[bytes, bytes] = {}
STANDARD = record("standard", STORE, None)
FAST = record("fast", STORE, STORE[IDENTITY.group_id])
TRANSCRIPTS = {"standard": STANDARD, "fast": FAST}


def replay_until(t: Transcript, step: int) -> tuple[Reader, list[Event]]:
    reader = make_reader(t)
    reader.start()
    events: list[Event] = []
    for answer in t.answers[:step]:
        event = reader.receive(answer)
        events.append(event)
        if isinstance(event, Authenticated):
            reader.door_status(ReaderStatus.STATE_UNSECURED)
    return reader, events


@st.composite
def mutated(draw: st.DrawFn, genuine: bytes) -> bytes:
    data = bytearray(genuine)
    kind = draw(st.sampled_from(["flip", "truncate", "extend", "insert", "delete", "set",
                                 "random", "swap_sw"]))
    if kind == "random" or not data:
        return draw(st.binary(max_size=300))
    if kind == "flip":
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        del data[draw(st.integers(0, len(data) - 1)):]
    elif kind == "extend":
        data += draw(st.binary(min_size=1, max_size=40))
    elif kind == "insert":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=8))
    elif kind == "delete":
        i = draw(st.integers(0, len(data) - 1))
        del data[i : i + draw(st.integers(1, 8))]
    elif kind == "set":
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0x81, 0x82, 0xFF]))
    else:
        data[-2:] = draw(st.binary(min_size=2, max_size=2))
    return bytes(data)


@pytest.mark.parametrize("flow", ["standard", "fast"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_reader_survives_any_answer_at_any_step(flow: str, data: st.DataObject) -> None:
    t = TRANSCRIPTS[flow]
    step = data.draw(st.integers(0, len(t.answers) - 1), label="step")
    genuine = t.answers[step]
    answer = data.draw(mutated(genuine), label="answer")
    reader, _ = replay_until(t, step)
    event = reader.receive(answer)  # must not raise
    assert isinstance(event, SendCommand | Authenticated | Failed | Finished)
    if isinstance(event, Failed):
        assert event.reason != "internal", event
        assert reader.done
    if isinstance(event, Authenticated):
        assert answer == genuine
    if isinstance(event, Finished):
        # Only the final EXCHANGE answer can finish; it carries no secret.
        assert step == len(t.answers) - 1
        assert answer == genuine or answer[-2:] == b"\x90\x00"


@pytest.mark.parametrize("flow", ["standard", "fast"])
def test_genuine_replay_authenticates(flow: str) -> None:
    """Guards the fuzz test itself: the genuine transcript does authenticate."""
    t = TRANSCRIPTS[flow]
    _, events = replay_until(t, len(t.answers))
    assert any(isinstance(e, Authenticated) and e.flow == flow for e in events)
    assert isinstance(events[-1], Finished)


@settings(max_examples=300, deadline=None)
@given(commands=st.lists(st.binary(max_size=280), min_size=1, max_size=6),
       select_first=st.booleans())
def test_phone_answers_a_status_word_to_anything(commands: list[bytes],
                                                 select_first: bool) -> None:
    phone = PhoneApplet(PHONE_KEY, IDENTITY.public_key)
    if select_first:
        phone.process(bytes.fromhex("00a4040009a000000909acce550100"))
    for command in commands:
        answer = phone.process(command)
        assert len(answer) >= 2
        assert answer[-2:] != bytes.fromhex("6f00"), command.hex()  # no internal error
    assert phone.last_door_status is None
