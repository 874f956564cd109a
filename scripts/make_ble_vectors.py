"""Write passbridge's BLE test vectors to protocols/ble/vectors/.

* framing-v1.json: messages and ATT MTUs -> the exact GATT values (chunks),
  and chunk sequences a receiver must reject.
* advertisement-v1.json: rotating ids -> advertisement, scan response and
  service data bytes, and payloads a scanner must reject.
* rotating-id-v1.json: fixed credential and reader keys -> the proximity key
  both ends derive, and instants -> time slot -> the exact rotating id and
  its scan response.
* transcript-standard-v1.json: a whole Bluetooth authentication with fixed
  keys (the inputs of protocols/nfc/vectors/passbridge-standard-v1.json, but
  interface byte C3), every APDU and its GATT chunks at the minimum MTU.

    .venv/bin/python scripts/make_ble_vectors.py [--check]

--check exits 1 if the files on disk differ from what would be written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from passbridge.bridge.reader_driver import InMemoryCredentials, settle  # noqa: E402
from passbridge.protocol.aliro_crypto import (  # noqa: E402
    Interface,
    ecdh_shared_x,
    private_key_from_scalar,
)
from passbridge.protocol.aliro_phone import PhoneApplet  # noqa: E402
from passbridge.protocol.aliro_reader import (  # noqa: E402
    Authenticated,
    Failed,
    Finished,
    ReaderIdentity,
    ReaderTransaction,
    SendCommand,
)
from passbridge.protocol.ble_advert import (  # noqa: E402
    PROXIMITY_KEY_INFO,
    ROTATING_ID_LABEL,
    SERVICE_UUID,
    SLOT_SECONDS,
    SLOT_TOLERANCE,
    advertising_data,
    derive_proximity_key,
    rotating_id,
    scan_response_data,
    service_data,
    slot_at,
)
from passbridge.protocol.ble_framing import (  # noqa: E402
    MIN_ATT_MTU,
    REQUEST_CHAR_UUID,
    RESPONSE_CHAR_UUID,
    frame_message,
)

OUT = ROOT / "protocols" / "ble" / "vectors"
NFC_STANDARD = ROOT / "protocols" / "nfc" / "vectors" / "passbridge-standard-v1.json"

SELECT = bytes.fromhex("00a4040009a000000909acce550100")


def framing() -> dict[str, Any]:
    cases = [
        ("SELECT in one chunk", SELECT, 23),
        ("40 bytes over three chunks", bytes(range(40)), 23),
        ("300 bytes at MTU 247", bytes(i % 256 for i in range(300)), 247),
        ("counter wraps after 15", bytes(i % 251 for i in range(400)), 23),
        ("exactly fills one chunk", bytes(range(17)), 23),
        ("one byte more than one chunk", bytes(range(18)), 23),
    ]
    return {
        "id": "passbridge-ble-framing-v1",
        "hex": "lowercase hex, no separators",
        "valid": [
            {
                "name": name,
                "att_mtu": mtu,
                "message": message.hex(),
                "chunks": [c.hex() for c in frame_message(message, mtu)],
            }
            for name, message, mtu in cases
        ],
        "invalid": [
            {"name": "empty chunk", "chunks": [""]},
            {"name": "reserved bits set", "chunks": ["f0000100"]},
            {"name": "continuation without first", "chunks": ["4100"]},
            {"name": "first chunk with nonzero counter", "chunks": ["c1000100"]},
            {"name": "length zero", "chunks": ["c00000"]},
            {"name": "first without payload", "chunks": ["800005"]},
            {"name": "length over the 2048-byte limit", "chunks": ["80080100"]},
            {"name": "last before the announced length", "chunks": ["c000050102"]},
            {"name": "more than announced", "chunks": ["c00002010203"]},
            {"name": "new first inside a message", "chunks": ["8000050102", "c000010a"]},
            {"name": "skipped counter", "chunks": ["8000050102", "42030405"]},
            {"name": "complete but not marked last", "chunks": ["8000030102", "0103"]},
            {"name": "empty continuation", "chunks": ["8000050102", "01"]},
        ],
    }


def advertisement() -> dict[str, Any]:
    ids = ["0011223344556677", "f0e1d2c3b4a59687"]
    return {
        "id": "passbridge-ble-advertisement-v1",
        "service_uuid": SERVICE_UUID,
        "request_characteristic_uuid": REQUEST_CHAR_UUID,
        "response_characteristic_uuid": RESPONSE_CHAR_UUID,
        "advertising_data": advertising_data().hex(),
        "valid": [
            {
                "adv_id": i,
                "service_data": service_data(bytes.fromhex(i)).hex(),
                "scan_response_data": scan_response_data(bytes.fromhex(i)).hex(),
            }
            for i in ids
        ],
        "invalid_service_data": [
            {"name": "unknown layout version", "service_data": "020011223344556677"},
            {"name": "too short", "service_data": "01001122334455"},
            {"name": "too long", "service_data": "01001122334455667788"},
            {"name": "empty", "service_data": ""},
        ],
    }


def rotating_ids() -> dict[str, Any]:
    nfc = json.loads(NFC_STANDARD.read_text())["inputs"]
    credential = private_key_from_scalar(bytes.fromhex(nfc["credential_private_key"]))
    reader = private_key_from_scalar(bytes.fromhex(nfc["reader_private_key"]))
    credential_point = bytes.fromhex(nfc["credential_public_key"])
    reader_point = bytes.fromhex(nfc["reader_public_key"])
    key = derive_proximity_key(credential, reader_point)
    if key != derive_proximity_key(reader, credential_point):
        raise SystemExit("the two ends disagree on the proximity key")
    start = 1796025600  # 2026-11-30T08:00:00Z, a slot boundary
    instants = [
        ("a slot's first second", start),
        ("its last second", start + SLOT_SECONDS - 1),
        ("the next slot", start + SLOT_SECONDS),
        ("the slot before", start - 1),
    ]
    cases: list[dict[str, Any]] = []
    for name, unix in instants:
        slot = slot_at(unix)
        adv_id = rotating_id(key, slot)
        cases.append({
            "name": name,
            "unix_time": unix,
            "slot": slot,
            "hmac_message": (ROTATING_ID_LABEL + slot.to_bytes(8, "big")).hex(),
            "adv_id": adv_id.hex(),
            "scan_response_data": scan_response_data(adv_id).hex(),
        })
    big = 2**32 + 5
    cases.append({"name": "a slot above 2^32 (eight-byte big-endian counter)",
                  "slot": big,
                  "hmac_message": (ROTATING_ID_LABEL + big.to_bytes(8, "big")).hex(),
                  "adv_id": rotating_id(key, big).hex()})
    return {
        "id": "passbridge-ble-rotating-id-v1",
        "hex": "lowercase hex, no separators",
        "note": (
            "Keys are the credential and reader keys of "
            "protocols/nfc/vectors/passbridge-standard-v1.json. The phone derives the "
            "proximity key from its credential private key and the reader public key, the "
            "site from the reader private key and the credential public key; both get "
            "proximity_key. adv_id = first 8 bytes of HMAC-SHA256(proximity_key, "
            "hmac_message); slot = floor(unix_time / slot_seconds)."
        ),
        "slot_seconds": SLOT_SECONDS,
        "slot_tolerance": SLOT_TOLERANCE,
        "hkdf": {"hash": "SHA-256", "salt": "", "info": PROXIMITY_KEY_INFO.hex(),
                 "info_text": PROXIMITY_KEY_INFO.decode("ascii"), "length": len(key)},
        "rotating_id_label": ROTATING_ID_LABEL.hex(),
        "rotating_id_label_text": ROTATING_ID_LABEL.decode("ascii"),
        "inputs": {
            "credential_private_key": nfc["credential_private_key"],
            "credential_public_key": nfc["credential_public_key"],
            "reader_private_key": nfc["reader_private_key"],
            "reader_public_key": nfc["reader_public_key"],
        },
        "ecdh_shared_x": ecdh_shared_x(credential, reader_point).hex(),
        "proximity_key": key.hex(),
        "cases": cases,
    }


def transcript() -> dict[str, Any]:
    nfc = json.loads(NFC_STANDARD.read_text())
    i = dict(nfc["inputs"])
    i["interface"] = f"{Interface.BLE:02x}"
    i["att_mtu"] = MIN_ATT_MTU

    def key(name: str) -> Any:
        return private_key_from_scalar(bytes.fromhex(i[name]))

    identity = ReaderIdentity(
        key("reader_private_key"),
        bytes.fromhex(i["reader_group_identifier"]),
        bytes.fromhex(i["reader_group_sub_identifier"]),
    )
    credential_id = nfc["expected"]["credential_id"]
    credentials = InMemoryCredentials({bytes.fromhex(i["credential_public_key"]): credential_id})
    reader = ReaderTransaction(
        identity,
        interface=Interface.BLE,
        prefer_fast=False,
        ephemeral_private_key=key("reader_ephemeral_private_key"),
        transaction_id=bytes.fromhex(i["transaction_identifier"]),
        deterministic_signatures=True,
    )
    phone = PhoneApplet(
        key("credential_private_key"),
        identity.public_key,
        interface=Interface.BLE,
        ephemeral_private_key=key("endpoint_ephemeral_private_key"),
        deterministic_signatures=True,
    )
    steps = []
    names = iter(["SELECT", "AUTH0 (standard)", "AUTH1", "EXCHANGE (reader status)"])
    command = reader.start()
    flow = None
    while True:
        answer = phone.process(command)
        steps.append(
            {
                "step": next(names),
                "c_apdu": command.hex(),
                "c_chunks": [c.hex() for c in frame_message(command, MIN_ATT_MTU)],
                "r_apdu": answer.hex(),
                "r_chunks": [c.hex() for c in frame_message(answer, MIN_ATT_MTU)],
            }
        )
        event = settle(reader, reader.receive(answer), credentials)
        if isinstance(event, SendCommand):
            command = event.apdu
        elif isinstance(event, Authenticated):
            flow = event.flow
            command = reader.door_status(int(i["reader_status"], 16))
        elif isinstance(event, Finished):
            break
        else:
            assert isinstance(event, Failed)
            raise SystemExit(f"transcript failed: {event}")
    return {
        "id": "passbridge-ble-standard-v1",
        "origin": "passbridge scripts/make_ble_vectors.py (both roles of passbridge's own code)",
        "hex": "lowercase hex, no separators; APDUs include header and status word",
        "note": (
            "Same inputs as protocols/nfc/vectors/passbridge-standard-v1.json except the "
            "interface byte (c3): SELECT, AUTH0 and the AUTH1 command are identical, every "
            "encrypted answer differs, so an NFC transcript never verifies over BLE. Chunks "
            "are at the minimum ATT MTU."
        ),
        "signatures": nfc["signatures"],
        "inputs": i,
        "apdus": steps,
        "expected": {"credential_id": credential_id, "flow": flow},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    files = {
        "framing-v1.json": framing(),
        "advertisement-v1.json": advertisement(),
        "rotating-id-v1.json": rotating_ids(),
        "transcript-standard-v1.json": transcript(),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    stale = []
    for name, content in files.items():
        text = json.dumps(content, indent=1) + "\n"
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("stale BLE vectors:", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
