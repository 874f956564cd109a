"""The simulated ISO-DEP card against nfcpy's own, unchanged reader code over udp."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import nfc
import nfc.clf
import nfc.tag.tt4
import pytest

from passbridge.sim.nfc_card import CardFaults, CardPortBusy, SimulatedCard


def applet(command: bytes) -> bytes:
    """Reversed command; INS B0 asks for P1P2 bytes of counting data instead."""
    if len(command) >= 4 and command[1] == 0xB0:
        size = int.from_bytes(command[2:4], "big")
        return bytes(i % 251 for i in range(size)) + b"\x90\x00"
    return command[::-1] + b"\x90\x00"


@pytest.fixture
def card() -> Iterator[SimulatedCard]:
    with SimulatedCard(applet) as running:
        yield running


def one_tap(device: str, on_tag: Any) -> Any:
    """Run nfcpy's reader loop for one activation; return what on_tag returned."""
    clf = nfc.ContactlessFrontend(device)
    seen: dict[str, Any] = {}

    def on_connect(tag: Any) -> bool:
        seen["tag"] = tag
        seen["value"] = on_tag(tag)
        return False  # do not wait for the card to leave

    try:
        clf.connect(rdwr={"targets": ["106A"], "on-connect": on_connect})
    finally:
        clf.close()
    assert "tag" in seen, "nfcpy never activated the simulated card"
    return seen["value"]


def test_card_is_a_type4a_tag_bound_to_loopback(card: SimulatedCard) -> None:
    assert card.address == ("127.0.0.1", card.port)
    assert card.device == f"udp:127.0.0.1:{card.port}"
    kind = one_tap(card.device, lambda tag: (type(tag).__name__, bytes(tag.identifier)))
    assert kind == ("Type4ATag", card.uid)
    assert card.uid[0] == 0x08  # random UID, as phones use
    assert card.activations == 1


def test_short_and_chained_apdus_both_ways(card: SimulatedCard) -> None:
    short = bytes.fromhex("00A4040007D276000085010100")
    long_command = b"\x80\xca\x00\x00" + bytes(range(256)) + bytes(range(44))  # 304 bytes
    long_answer = bytes.fromhex("00B00258")  # asks for 600 bytes

    def run(tag: Any) -> list[bytes]:
        return [bytes(tag.transceive(c)) for c in (short, long_command, long_answer)]

    answers = one_tap(card.device, run)
    assert answers[0] == short[::-1] + b"\x90\x00"
    assert answers[1] == long_command[::-1] + b"\x90\x00"
    assert answers[2] == bytes(i % 251 for i in range(600)) + b"\x90\x00"
    assert card.received_apdus() == [short, long_command, long_answer]


def test_send_apdu_status_words_reach_nfcpy(card: SimulatedCard) -> None:
    def refuse(command: bytes) -> bytes:
        return b"\x6a\x82"

    with SimulatedCard(refuse) as refusing:
        def run(tag: Any) -> int:
            with pytest.raises(nfc.tag.tt4.Type4TagCommandError) as raised:
                tag.send_apdu(0x00, 0xA4, 0x04, 0x00, b"\xa0\x00")
            return int(raised.value.errno)

        assert one_tap(refusing.device, run) == 0x6A82


def test_slow_applet_keeps_link_with_wtx(card: SimulatedCard) -> None:
    # 0.5 s is several frame waiting times (FWI 9 is about 155 ms): without
    # S(WTX) nfcpy would give up or resend; with it the answer arrives intact.
    card.leave_field()
    card.enter_field(CardFaults(delay={0: 0.5}))
    answer = one_tap(card.device, lambda tag: bytes(tag.transceive(b"\x00\x01\x02\x03")))
    assert answer == b"\x03\x02\x01\x00\x90\x00"


def test_presence_check_and_deselect(card: SimulatedCard) -> None:
    def run(tag: Any) -> tuple[bool, bytes]:
        tag.transceive(b"\x00\x01\x00\x00")
        present = bool(tag.is_present)  # R(NAK) presence check answered with R(ACK)
        deselected = bytes(tag.clf.exchange(b"\xc2", 0.2))  # S(DESELECT)
        return present, deselected

    assert one_tap(card.device, run) == (True, b"\xc2")
    # Deselected, the card waits for a new activation and gets one.
    assert one_tap(card.device, lambda tag: bytes(tag.transceive(b"\xaa\xbb"))) == (
        b"\xbb\xaa\x90\x00"
    )
    assert card.activations == 2


def test_card_out_of_the_field_is_not_found(card: SimulatedCard) -> None:
    card.leave_field()
    clf = nfc.ContactlessFrontend(card.device)
    try:
        assert clf.sense(nfc.clf.RemoteTarget("106A"), iterations=1) is None
    finally:
        clf.close()
    card.enter_field()
    assert one_tap(card.device, lambda tag: bytes(tag.transceive(b"\x01\x02"))) == (
        b"\x02\x01\x90\x00"
    )


def test_field_loss_breaks_the_reader_link(card: SimulatedCard) -> None:
    card.leave_field()
    card.enter_field(CardFaults(drop_after=1))

    def run(tag: Any) -> str:
        tag.transceive(b"\x00\x01")
        with pytest.raises(nfc.clf.BrokenLinkError):
            tag.transceive(b"\x00\x02")
        return "broken"

    assert one_tap(card.device, run) == "broken"
    assert not card.in_field


def test_busy_port_is_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(CardPortBusy, match=f"127.0.0.1:{port} is already in use"):
            SimulatedCard(applet, port=port)


def test_two_cards_get_their_own_ports() -> None:
    with SimulatedCard(applet) as first, SimulatedCard(lambda c: b"\x90\x00") as second:
        assert first.port != second.port
        assert one_tap(second.device, lambda tag: bytes(tag.transceive(b"\x01"))) == b"\x90\x00"
        assert first.activations == 0


def test_a_free_port_is_one_the_reader_can_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """The OS's free port is now and then one /etc/services names (57000 is
    ``dircproxy``, which failed the scenario run once): nfcpy's udp reader
    gets the name back from getnameinfo and cannot open the path. Here the
    first port anyone looks up is such a one."""
    real = socket.getnameinfo
    named: list[int] = []

    def services(address: tuple[str, int], flags: int) -> tuple[str, str]:
        host, service = real(address, flags)
        if not named:
            named.append(address[1])
        return (host, "dircproxy") if address[1] in named else (host, service)

    monkeypatch.setattr(socket, "getnameinfo", services)
    with SimulatedCard(applet) as card:
        assert card.port not in named
        assert one_tap(card.device, lambda tag: bytes(tag.identifier)) == card.uid


def test_applet_crash_answers_6f00() -> None:
    def crashing(command: bytes) -> bytes:
        raise RuntimeError("applet bug")

    with SimulatedCard(crashing) as card:
        assert one_tap(card.device, lambda tag: bytes(tag.transceive(b"\x00\x01"))) == b"\x6f\x00"
