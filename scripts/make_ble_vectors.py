"""Write passbridge's BLE test vectors to protocols/ble/vectors/.

* framing-v1.json: messages and ATT MTUs -> the exact GATT values (chunks),
  and chunk sequences a receiver must reject.
* advertisement-v1.json: rotating ids -> advertisement, scan response and
  service data bytes, and payloads a scanner must reject.
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

from passbridge.protocol.aliro_crypto import Interface, private_key_from_scalar  # noqa: E402
from passbridge.protocol.aliro_phone import PhoneApplet  # noqa: E402
from passbridge.protocol.aliro_reader import (  # noqa: E402
    Authenticated,
    Failed,
    Finished,
    InMemoryCredentials,
    ReaderIdentity,
    ReaderTransaction,
    SendCommand,
)
from passbridge.protocol.ble_advert import (  # noqa: E402
    SERVICE_UUID,
    advertising_data,
    scan_response_data,
    service_data,
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
        credentials,
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
        event = reader.receive(answer)
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
