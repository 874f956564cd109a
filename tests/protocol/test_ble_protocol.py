"""BLE framing and advertisement (sans-I/O) against protocols/ble/vectors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from passbridge.protocol.ble_advert import (
    AdvertError,
    adv_id_from_payload,
    adv_id_from_service_data,
    advertising_data,
    format_adv_id,
    new_adv_id,
    parse_adv_id,
    parse_service_data,
    scan_response_data,
    service_data,
)
from passbridge.protocol.ble_framing import (
    SERVICE_UUID,
    FramingError,
    MessageAssembler,
    frame_message,
)
from tests.conftest import PROJECT

VECTORS = PROJECT / "protocols" / "ble" / "vectors"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


FRAMING = load("framing-v1.json")
ADVERT = load("advertisement-v1.json")


@pytest.mark.parametrize("case", FRAMING["valid"], ids=lambda c: c["name"])
def test_framing_vector_exact_chunks(case: dict[str, Any]) -> None:
    message = bytes.fromhex(case["message"])
    chunks = frame_message(message, case["att_mtu"])
    assert [c.hex() for c in chunks] == case["chunks"]
    assert all(len(c) <= case["att_mtu"] - 3 for c in chunks)
    assembler = MessageAssembler()
    results = [assembler.feed(bytes.fromhex(c)) for c in case["chunks"]]
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1] == message
    assert not assembler.in_progress


@pytest.mark.parametrize("case", FRAMING["invalid"], ids=lambda c: c["name"])
def test_framing_vector_rejected(case: dict[str, Any]) -> None:
    assembler = MessageAssembler()
    chunks = [bytes.fromhex(c) for c in case["chunks"]]
    with pytest.raises(FramingError):
        for chunk in chunks:
            assembler.feed(chunk)
    # after the error the assembler is clean and takes a good message again
    assert assembler.feed(bytes.fromhex("c000029000")) == b"\x90\x00"


@given(st.binary(min_size=1, max_size=2048), st.integers(min_value=23, max_value=517))
def test_framing_round_trip(message: bytes, mtu: int) -> None:
    assembler = MessageAssembler()
    chunks = frame_message(message, mtu)
    out = [assembler.feed(c) for c in chunks]
    assert out[-1] == message and all(o is None for o in out[:-1])


def test_framing_limits() -> None:
    with pytest.raises(FramingError):
        frame_message(b"", 23)
    with pytest.raises(FramingError):
        frame_message(bytes(2049), 23)
    with pytest.raises(FramingError):
        frame_message(b"x", 22)
    small = MessageAssembler(max_message=100)
    with pytest.raises(FramingError, match="limit"):
        small.feed(frame_message(bytes(101), 247)[0])


def test_advertisement_vectors() -> None:
    assert ADVERT["service_uuid"] == SERVICE_UUID
    assert advertising_data().hex() == ADVERT["advertising_data"]
    assert len(advertising_data()) <= 31
    for case in ADVERT["valid"]:
        adv_id = bytes.fromhex(case["adv_id"])
        assert service_data(adv_id).hex() == case["service_data"]
        assert scan_response_data(adv_id).hex() == case["scan_response_data"]
        assert len(scan_response_data(adv_id)) <= 31
        assert parse_service_data(bytes.fromhex(case["service_data"])) == adv_id
        assert adv_id_from_payload(bytes.fromhex(case["scan_response_data"])) == adv_id
        assert adv_id_from_service_data({SERVICE_UUID: service_data(adv_id)}) == adv_id
    for case in ADVERT["invalid_service_data"]:
        with pytest.raises(AdvertError):
            parse_service_data(bytes.fromhex(case["service_data"]))


def test_advertisement_rejects_foreign_and_truncated() -> None:
    with pytest.raises(AdvertError):
        adv_id_from_service_data({"0000feaa-0000-1000-8000-00805f9b34fb": b"\x01" * 9})
    with pytest.raises(AdvertError):
        adv_id_from_payload(advertising_data())  # UUID only, no service data
    with pytest.raises(AdvertError):
        adv_id_from_payload(bytes.fromhex("1a216b66"))  # runs past the end


def test_adv_id_text_form_and_randomness() -> None:
    adv_id = new_adv_id()
    assert parse_adv_id(format_adv_id(adv_id)) == adv_id
    assert new_adv_id() != new_adv_id()
    for bad in ("00112233445566", "00112233445566ZZ", "00112233445566AA"):
        with pytest.raises(AdvertError):
            parse_adv_id(bad)
    with pytest.raises(AdvertError):
        format_adv_id(b"short")


# --------------------------------------------------------------------------- BLE transcript


def _transcript_parties(v: dict[str, Any]) -> tuple[Any, Any, Any]:
    from passbridge.bridge.reader_driver import InMemoryCredentials
    from passbridge.protocol.aliro_crypto import Interface, private_key_from_scalar
    from passbridge.protocol.aliro_phone import PhoneApplet
    from passbridge.protocol.aliro_reader import ReaderIdentity, ReaderTransaction

    i = v["inputs"]

    def key(name: str) -> Any:
        return private_key_from_scalar(bytes.fromhex(i[name]))

    identity = ReaderIdentity(key("reader_private_key"),
                              bytes.fromhex(i["reader_group_identifier"]),
                              bytes.fromhex(i["reader_group_sub_identifier"]))
    credentials = InMemoryCredentials(
        {bytes.fromhex(i["credential_public_key"]): v["expected"]["credential_id"]})
    reader = ReaderTransaction(identity, interface=Interface(int(i["interface"], 16)),
                               prefer_fast=False,
                               ephemeral_private_key=key("reader_ephemeral_private_key"),
                               transaction_id=bytes.fromhex(i["transaction_identifier"]),
                               deterministic_signatures=True)
    phone = PhoneApplet(key("credential_private_key"), identity.public_key,
                        interface=Interface(int(i["interface"], 16)),
                        ephemeral_private_key=key("endpoint_ephemeral_private_key"),
                        deterministic_signatures=True)
    return reader, phone, credentials


def test_ble_transcript_reproduced_by_both_roles() -> None:
    from passbridge.bridge.reader_driver import settle
    from passbridge.protocol.aliro_reader import Authenticated, Finished, SendCommand

    v = load("transcript-standard-v1.json")
    assert v["inputs"]["interface"] == "c3"
    reader, phone, credentials = _transcript_parties(v)
    mtu = v["inputs"]["att_mtu"]
    command = reader.start()
    to_phone, to_reader = MessageAssembler(), MessageAssembler()
    final = None
    for step in v["apdus"]:
        assert command.hex() == step["c_apdu"], step["step"]
        assert [c.hex() for c in frame_message(command, mtu)] == step["c_chunks"]
        received = [to_phone.feed(bytes.fromhex(c)) for c in step["c_chunks"]][-1]
        answer = phone.process(received)
        assert answer.hex() == step["r_apdu"], step["step"]
        assert [c.hex() for c in frame_message(answer, mtu)] == step["r_chunks"]
        answer = [to_reader.feed(bytes.fromhex(c)) for c in step["r_chunks"]][-1]
        event = settle(reader, reader.receive(answer), credentials)
        if isinstance(event, SendCommand):
            command = event.apdu
        elif isinstance(event, Authenticated):
            assert event.credential_id == v["expected"]["credential_id"]
            command = reader.door_status(int(v["inputs"]["reader_status"], 16))
        final = event
    assert isinstance(final, Finished)
    assert phone.last_door_status is True


def test_nfc_answers_do_not_verify_over_ble() -> None:
    """The NFC vector's AUTH1 answer, replayed to a BLE reader, is refused."""
    from passbridge.protocol.aliro_reader import Failed, SendCommand

    ble = load("transcript-standard-v1.json")
    nfc_path = VECTORS.parent.parent / "nfc" / "vectors" / "passbridge-standard-v1.json"
    nfc = json.loads(nfc_path.read_text())
    reader, _, _ = _transcript_parties(ble)
    reader.start()
    for step in nfc["apdus"][:2]:  # SELECT and AUTH0 answers are interface-independent
        event = reader.receive(bytes.fromhex(step["r_apdu"]))
        assert isinstance(event, SendCommand)
    assert nfc["apdus"][2]["r_apdu"] != ble["apdus"][2]["r_apdu"]
    assert isinstance(reader.receive(bytes.fromhex(nfc["apdus"][2]["r_apdu"])), Failed)


# --------------------------------------------------------------------------- rotating ids

ROTATING = load("rotating-id-v1.json")


def test_rotating_id_vectors_follow_the_written_derivation() -> None:
    """The vector, recomputed from primitives (cryptography's ECDH and HKDF,
    the stdlib's HMAC) exactly as protocols/ble/README.md words it, and not
    through passbridge's own functions."""
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    inputs = ROTATING["inputs"]
    phone = ec.derive_private_key(int(inputs["credential_private_key"], 16), ec.SECP256R1())
    reader_public = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), bytes.fromhex(inputs["reader_public_key"]))
    z = phone.exchange(ec.ECDH(), reader_public)
    assert z.hex() == ROTATING["ecdh_shared_x"]
    key = HKDF(hashes.SHA256(), 32, salt=None,
               info=b"passbridge ble proximity key v1").derive(z)
    assert key.hex() == ROTATING["proximity_key"]
    for case in ROTATING["cases"]:
        if "unix_time" in case:
            assert case["slot"] == case["unix_time"] // 300
        message = b"passbridge ble rotating id v1" + case["slot"].to_bytes(8, "big")
        assert message.hex() == case["hmac_message"]
        assert hmac.new(key, message, hashlib.sha256).digest()[:8].hex() == case["adv_id"]


def test_both_ends_derive_the_vector_key_and_ids() -> None:
    from passbridge.protocol.aliro_crypto import private_key_from_scalar
    from passbridge.protocol.ble_advert import derive_proximity_key, rotating_id, slot_at

    inputs = ROTATING["inputs"]
    phone = private_key_from_scalar(bytes.fromhex(inputs["credential_private_key"]))
    reader = private_key_from_scalar(bytes.fromhex(inputs["reader_private_key"]))
    at_phone = derive_proximity_key(phone, bytes.fromhex(inputs["reader_public_key"]))
    at_site = derive_proximity_key(reader, bytes.fromhex(inputs["credential_public_key"]))
    assert at_phone == at_site and at_phone.hex() == ROTATING["proximity_key"]
    for case in ROTATING["cases"]:
        if "unix_time" in case:
            assert slot_at(case["unix_time"]) == case["slot"]
            adv_id = rotating_id(at_phone, case["slot"])
            assert scan_response_data(adv_id).hex() == case["scan_response_data"]
        assert rotating_id(at_phone, case["slot"]).hex() == case["adv_id"]


def test_ble_vector_files_match_the_generator() -> None:
    import subprocess
    import sys

    script = VECTORS.parent.parent.parent / "scripts" / "make_ble_vectors.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
