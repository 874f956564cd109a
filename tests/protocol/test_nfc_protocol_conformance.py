"""Both roles against the independent NXP Aliro vectors in ../shared/vectors/aliro."""

from __future__ import annotations

import json
from typing import Any

import pytest

from passbridge.bridge.reader_driver import InMemoryCredentials, settle
from passbridge.protocol.aliro_crypto import (
    ENDPOINT_CONTEXT,
    LABEL_VOLATILE,
    READER_CONTEXT,
    SecureChannel,
    authentication_data,
    derive_volatile_keys,
    ecdh_shared_x,
    private_key_from_scalar,
    public_key_bytes,
    verify_raw,
    x963_kdf,
    x_coordinate,
)
from passbridge.protocol.aliro_messages import parse_auth1_answer
from passbridge.protocol.aliro_phone import PhoneApplet
from passbridge.protocol.aliro_reader import (
    Authenticated,
    Finished,
    ReaderIdentity,
    ReaderTransaction,
    SendCommand,
)
from passbridge.protocol.exchange_status import ReaderStatus
from tests.conftest import shared_path


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(shared_path("vectors", "aliro", name).read_text())
    return data


def h(value: str) -> bytes:
    return bytes.fromhex(value.split()[0])


def key(value: str):  # type: ignore[no-untyped-def]
    return private_key_from_scalar(h(value))


@pytest.fixture
def std() -> dict[str, Any]:
    return load("nxp-standard-v1.0.json")


@pytest.fixture
def fast() -> dict[str, Any]:
    return load("nxp-fast-v1.0.json")


def std_reader(v: dict[str, Any], credentials: InMemoryCredentials) -> ReaderTransaction:
    i = v["inputs"]
    identity = ReaderIdentity(key(i["reader_private_key_parsed_by_helper"]),
                              h(i["reader_group_identifier"]), h(i["reader_group_sub_identifier"]))
    return ReaderTransaction(identity, prefer_fast=False,
                             ephemeral_private_key=key(i["reader_ephemeral_private_key_parsed_by_helper"]),
                             transaction_id=h(i["transaction_identifier"]))


def std_credentials(v: dict[str, Any]) -> InMemoryCredentials:
    return InMemoryCredentials(
        {h(v["inputs"]["endpoint_long_term_public_key_derived_by_helper"]): "nxp-phone"})


def test_reader_reproduces_standard_transaction(std: dict[str, Any]) -> None:
    apdus = std["apdus"]
    credentials = std_credentials(std)
    reader = std_reader(std, credentials)

    assert reader.start().hex() == apdus[0]["c_apdu"]
    auth0 = reader.receive(h(apdus[0]["r_apdu"]))
    assert isinstance(auth0, SendCommand)
    assert auth0.apdu.hex() == apdus[1]["c_apdu"]

    auth1 = reader.receive(h(apdus[1]["r_apdu"]))
    assert isinstance(auth1, SendCommand)
    recorded = h(apdus[2]["c_apdu"])
    # 80 81 00 00 45 | 41 01 01 | 9E 40 <signature> | Le
    assert len(auth1.apdu) == len(recorded)
    assert auth1.apdu[:10] == recorded[:10]
    assert auth1.apdu[-1:] == recorded[-1:]
    signature = auth1.apdu[10:74]
    assert signature != recorded[10:74]  # randomised ECDSA
    signed = h(std["intermediates"]["reader_authentication_data"])
    reader_public = h(std["inputs"]["reader_public_key_derived_by_helper"])
    assert verify_raw(reader_public, signature, signed)
    assert verify_raw(reader_public, recorded[10:74], signed)

    done = settle(reader, reader.receive(h(apdus[2]["r_apdu"])), credentials)
    assert isinstance(done, Authenticated), done
    assert done.credential_id == "nxp-phone"
    assert done.flow == "standard"
    assert done.public_key == h(std["inputs"]["endpoint_long_term_public_key_derived_by_helper"])
    assert done.transaction_id == h(std["inputs"]["transaction_identifier"])

    keys = reader.keys
    assert keys.kdh == h(std["intermediates"]["Kdh (file name SHARED_KEY)"])
    assert keys.volatile is not None and keys.salt_inputs is not None
    assert keys.salt_inputs.salt(LABEL_VOLATILE) == h(std["intermediates"]["session_salt"])
    assert keys.volatile.exchange_sk_reader == h(
        std["intermediates"]["ExpeditedSKReader (file name EXCHANGE_SK_READER)"])
    assert keys.volatile.exchange_sk_device == h(
        std["intermediates"]["ExpeditedSKDevice (file name EXCHANGE_SK_DEVICE)"])
    okm = h(std["derived_by_helper"]["hkdf_okm_160"])
    v = keys.volatile
    assert v.exchange_sk_reader + v.exchange_sk_device + v.step_up_sk + v.ble_sk + v.ursk == okm
    kp = h(std["derived_by_helper"]["Kpersistent_for_this_endpoint"])
    assert keys.kpersistent == kp
    assert list(credentials.persistent_keys()) == [("nxp-phone", done.public_key, kp)]


def test_key_schedule_primitives_match_intermediates(std: dict[str, Any]) -> None:
    i, d = std["inputs"], std["derived_by_helper"]
    reader_eph = key(i["reader_ephemeral_private_key_parsed_by_helper"])
    z = ecdh_shared_x(reader_eph, h(i["endpoint_ephemeral_public_key"]))
    assert z == h(d["ecdh_Z"])
    assert x963_kdf(z, h(i["transaction_identifier"])) == h(
        std["intermediates"]["Kdh (file name SHARED_KEY)"])
    reader_id = h(i["reader_group_identifier"]) + h(i["reader_group_sub_identifier"])
    args = (reader_id, x_coordinate(h(i["endpoint_ephemeral_public_key"])),
            x_coordinate(h(i["reader_ephemeral_public_key"])), h(i["transaction_identifier"]))
    assert authentication_data(*args, READER_CONTEXT) == h(
        std["intermediates"]["reader_authentication_data"])
    assert authentication_data(*args, ENDPOINT_CONTEXT) == h(d["endpoint_authentication_data"])
    assert verify_raw(h(i["endpoint_long_term_public_key_derived_by_helper"]),
                      h(std["intermediates"]["endpoint_signature"]),
                      h(d["endpoint_authentication_data"]))


def test_reader_rejects_recorded_answer_when_credential_is_not_enrolled(
        std: dict[str, Any]) -> None:
    apdus = std["apdus"]
    credentials = InMemoryCredentials()
    reader = std_reader(std, credentials)
    reader.start()
    reader.receive(h(apdus[0]["r_apdu"]))
    reader.receive(h(apdus[1]["r_apdu"]))
    event = settle(reader, reader.receive(h(apdus[2]["r_apdu"])), credentials)
    assert not isinstance(event, Authenticated)
    assert event.reason == "unknown_credential"  # type: ignore[union-attr]


def std_phone(v: dict[str, Any]) -> PhoneApplet:
    i = v["inputs"]
    return PhoneApplet(key(i["endpoint_long_term_private_key_parsed_by_helper"]),
                       h(i["reader_public_key_derived_by_helper"]),
                       ephemeral_private_key=key(i["endpoint_ephemeral_private_key_parsed_by_helper"]))


def test_phone_reproduces_select_and_auth0_answers(std: dict[str, Any]) -> None:
    apdus = std["apdus"]
    phone = std_phone(std)
    assert phone.process(h(apdus[0]["c_apdu"])).hex() == apdus[0]["r_apdu"]
    assert phone.process(h(apdus[1]["c_apdu"])).hex() == apdus[1]["r_apdu"]


def test_phone_accepts_recorded_auth1_and_answers_in_the_channel(std: dict[str, Any]) -> None:
    apdus, inter = std["apdus"], std["intermediates"]
    phone = std_phone(std)
    phone.process(h(apdus[0]["c_apdu"]))
    phone.process(h(apdus[1]["c_apdu"]))
    answer = phone.process(h(apdus[2]["c_apdu"]))
    assert answer[-2:] == b"\x90\x00"
    sk_reader = h(inter["ExpeditedSKReader (file name EXCHANGE_SK_READER)"])
    sk_device = h(inter["ExpeditedSKDevice (file name EXCHANGE_SK_DEVICE)"])
    channel = SecureChannel(send_key=sk_reader, receive_key=sk_device, is_reader=True)
    plain = parse_auth1_answer(channel.decrypt(answer[:-2]))
    assert plain.credential_public_key == h(
        std["inputs"]["endpoint_long_term_public_key_derived_by_helper"])
    assert verify_raw(plain.credential_public_key, plain.endpoint_signature,
                      h(std["derived_by_helper"]["endpoint_authentication_data"]))
    # Its answer to the recorded AUTH1 yields the same Kpersistent as the reader's.
    group = h(std["inputs"]["reader_group_identifier"])
    assert phone.kpersistent_store[group] == h(
        std["derived_by_helper"]["Kpersistent_for_this_endpoint"])
    assert phone.process(h(apdus[3]["c_apdu"])).hex() == apdus[3]["r_apdu"]


def test_phone_keeps_quiet_when_auth1_signature_is_not_the_trusted_readers(
        std: dict[str, Any]) -> None:
    apdus = std["apdus"]
    i = std["inputs"]
    phone = PhoneApplet(key(i["endpoint_long_term_private_key_parsed_by_helper"]),
                        public_key_bytes(key(i["endpoint_ephemeral_private_key_parsed_by_helper"])),
                        ephemeral_private_key=key(i["endpoint_ephemeral_private_key_parsed_by_helper"]))
    phone.process(h(apdus[0]["c_apdu"]))
    phone.process(h(apdus[1]["c_apdu"]))
    assert phone.process(h(apdus[2]["c_apdu"])) == bytes.fromhex("6982")


def fast_setup(v: dict[str, Any]) -> tuple[ReaderIdentity, InMemoryCredentials]:
    i = v["inputs"]
    identity = ReaderIdentity(key(i["reader_private_key"]), h(i["reader_group_identifier"]),
                              h(i["reader_group_sub_identifier"]))
    credentials = InMemoryCredentials({h(i["credential_public_key"]): "nxp-phone"})
    credentials.remember_persistent_key("nxp-phone", h(i["credential_public_key"]),
                                        h(i["Kpersistent"]))
    return identity, credentials


def test_reader_accepts_fast_cryptogram_and_derives_recorded_keys(fast: dict[str, Any]) -> None:
    i = fast["inputs"]
    identity, credentials = fast_setup(fast)
    reader = ReaderTransaction(identity, prefer_fast=True,
                               ephemeral_private_key=key(i["reader_ephemeral_private_key"]),
                               transaction_id=h(i["transaction_identifier"]))
    reader.start()
    auth0 = reader.receive(h(i["select_response"]))
    assert isinstance(auth0, SendCommand)
    # The Google 0.7 body with the same keys (no Le); ours adds the Le of v1.0.
    assert auth0.apdu.hex().startswith("80800000814101014201015c020100874104de86")
    event = settle(reader, reader.receive(h(fast["apdus"][0]["r_apdu"])), credentials)
    assert isinstance(event, Authenticated), event
    assert event.flow == "fast"
    assert event.credential_id == "nxp-phone"
    assert event.public_key == h(fast["expected_reader_outputs"]["matched_credential_public_key"])
    out = fast["expected_reader_outputs"]
    assert reader.keys.fast is not None
    fast_keys = reader.keys.fast
    assert fast_keys.exchange_sk_reader == h(out["ExpeditedSKReader (file: exchange_SK_reader)"])
    assert fast_keys.exchange_sk_device == h(out["ExpeditedSKDevice (file: exchange_SK_device)"])
    assert reader.keys.fast.ble_sk == h(out["BleSK (file: ble_SK)"])
    assert reader.keys.fast.cryptogram_sk == h(fast["derived_by_helper"]["CryptogramSK"])
    assert reader.keys.fast.ursk == h(fast["derived_by_helper"]["URSK"])


def test_reader_falls_back_to_auth1_when_no_persistent_key_opens_the_cryptogram(
        fast: dict[str, Any]) -> None:
    i = fast["inputs"]
    identity, credentials = fast_setup(fast)
    credentials.forget_persistent_keys()
    reader = ReaderTransaction(identity, prefer_fast=True,
                               ephemeral_private_key=key(i["reader_ephemeral_private_key"]),
                               transaction_id=h(i["transaction_identifier"]))
    reader.start()
    reader.receive(h(i["select_response"]))
    event = settle(reader, reader.receive(h(fast["apdus"][0]["r_apdu"])), credentials)
    assert isinstance(event, SendCommand)
    assert event.apdu[:7] == bytes.fromhex("80810000454101")


def test_phone_reproduces_fast_auth0_answer_and_finishes_with_exchange(
        fast: dict[str, Any]) -> None:
    i = fast["inputs"]
    identity, credentials = fast_setup(fast)
    reader = ReaderTransaction(identity, prefer_fast=True,
                               ephemeral_private_key=key(i["reader_ephemeral_private_key"]),
                               transaction_id=h(i["transaction_identifier"]))
    phone = PhoneApplet(key(i["credential_private_key"]), identity.public_key,
                        ephemeral_private_key=key(i["endpoint_ephemeral_private_key"]),
                        kpersistent_store={identity.group_id: h(i["Kpersistent"])},
                        signaling_bitmap=h("003f"))
    select_answer = phone.process(reader.start())
    assert select_answer.hex() == i["select_response"]
    auth0 = reader.receive(select_answer)
    assert isinstance(auth0, SendCommand)
    answer = phone.process(auth0.apdu)
    assert answer.hex() == fast["apdus"][0]["r_apdu"]
    assert isinstance(settle(reader, reader.receive(answer), credentials), Authenticated)
    assert phone.process(reader.door_status(ReaderStatus.STATE_UNSECURED)) == b"\x90\x00"
    assert phone.last_door_status is True and phone.last_flow == "fast"
    assert isinstance(reader.receive(b"\x90\x00"), Finished)
    assert h(fast["derived_by_helper"]["cryptogram_plaintext"])[:4] == h("5e02003f")


def test_vectors_agree_on_the_volatile_key_layout(std: dict[str, Any]) -> None:
    """The HKDF split: a regression guard independent of the reader state machine."""
    i = std["inputs"]
    reader = std_reader(std, std_credentials(std))
    reader.start()
    reader.receive(h(std["apdus"][0]["r_apdu"]))
    assert reader.keys.salt_inputs is not None
    keys = derive_volatile_keys(h(std["intermediates"]["Kdh (file name SHARED_KEY)"]),
                                reader.keys.salt_inputs,
                                x_coordinate(h(i["endpoint_ephemeral_public_key"])))
    assert keys.ble_sk.hex() == std["derived_by_helper"]["hkdf_okm_160"][192:256]
