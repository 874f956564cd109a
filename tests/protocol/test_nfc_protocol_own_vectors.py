"""passbridge's published NFC vectors (protocols/nfc/vectors): both roles reproduce them."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pytest

from passbridge.bridge.reader_driver import InMemoryCredentials, settle
from passbridge.protocol.aliro_crypto import private_key_from_scalar, verify_raw
from passbridge.protocol.aliro_phone import PhoneApplet
from passbridge.protocol.aliro_reader import (
    Authenticated,
    Finished,
    ReaderIdentity,
    ReaderTransaction,
    SendCommand,
)
from tests.conftest import PROJECT

ROOT = PROJECT
VECTORS = sorted((ROOT / "protocols" / "nfc" / "vectors").glob("*.json"))


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def test_vector_set_is_complete() -> None:
    names = {p.name for p in VECTORS}
    assert {"passbridge-standard-v1.json", "passbridge-fast-v1.json",
            "passbridge-fast-fallback-v1.json", "passbridge-standard-denied-v1.json",
            "passbridge-fast-pending-v1.json"} <= names


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def identity_of(i: dict[str, str]) -> ReaderIdentity:
    return ReaderIdentity(private_key_from_scalar(h(i["reader_private_key"])),
                          h(i["reader_group_identifier"]), h(i["reader_group_sub_identifier"]))


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_reader_reproduces_every_command(path: Path) -> None:
    v = load(path)
    i = v["inputs"]
    cred_id = v["expected"]["credential_id"]
    credentials = InMemoryCredentials({h(i["credential_public_key"]): cred_id})
    if i.get("Kpersistent_reader"):
        credentials.remember_persistent_key(v["expected"]["credential_id"],
                                            h(i["credential_public_key"]),
                                            h(i["Kpersistent_reader"]))
    reader = ReaderTransaction(
        identity_of(i), prefer_fast=i["command_parameters"] == "01",
        ephemeral_private_key=private_key_from_scalar(h(i["reader_ephemeral_private_key"])),
        transaction_id=h(i["transaction_identifier"]), deterministic_signatures=True)
    command = reader.start()
    outcome: Authenticated | None = None
    for step in v["apdus"]:
        assert command.hex() == step["c_apdu"], step["step"]
        if step["step"] == "AUTH1":
            assert verify_raw(h(i["reader_public_key"]), command[10:74],
                              h(v["intermediates"]["reader_authentication_data"]))
        event = settle(reader, reader.receive(h(step["r_apdu"])), credentials)
        if isinstance(event, SendCommand):
            command = event.apdu
        elif isinstance(event, Authenticated):
            outcome = event
            command = reader.door_status(int(i["reader_status"], 16))
        else:
            assert isinstance(event, Finished), event
    assert reader.done
    assert outcome is not None
    assert outcome.flow == v["expected"]["flow"] == v["flow"]
    assert outcome.credential_id == v["expected"]["credential_id"]
    if "Kdh" in v["intermediates"]:
        assert reader.keys.kdh == h(v["intermediates"]["Kdh"])
        assert reader.keys.kpersistent == h(v["intermediates"]["Kpersistent"])


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_phone_reproduces_every_answer(path: Path) -> None:
    v = load(path)
    i = v["inputs"]
    store = {h(i["reader_group_identifier"]): h(i["Kpersistent_phone"])} if i.get(
        "Kpersistent_phone") else {}
    phone = PhoneApplet(
        private_key_from_scalar(h(i["credential_private_key"])), h(i["reader_public_key"]),
        ephemeral_private_key=private_key_from_scalar(h(i["endpoint_ephemeral_private_key"])),
        kpersistent_store=store, signaling_bitmap=h(i["signaling_bitmap"]),
        deterministic_signatures=True)
    for step in v["apdus"]:
        assert phone.process(h(step["c_apdu"])).hex() == step["r_apdu"], step["step"]
    assert phone.last_reader_status == int(v["expected"]["phone_reader_status"], 16)
    assert phone.last_door_status is v["expected"]["phone_last_door_status"]
    assert phone.last_flow == v["flow"]


def test_files_match_the_generator() -> None:
    """The published files are what scripts/make_nfc_vectors.py produces today."""
    module = runpy.run_path(str(ROOT / "scripts" / "make_nfc_vectors.py"))
    built = module["build"]()
    for name, vector in built.items():
        on_disk = load(ROOT / "protocols" / "nfc" / "vectors" / name)
        assert on_disk == json.loads(json.dumps(vector)), name
