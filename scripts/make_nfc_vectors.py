"""Write passbridge's own NFC test vectors to protocols/nfc/vectors/.

Fixed keys and transaction ids go in; both roles of passbridge's protocol code
run against each other in memory and every APDU is recorded. Signatures use
RFC 6979 deterministic ECDSA on both sides, so the APDUs are exact and a phone
implementation with deterministic signing can reproduce them byte for byte
(with randomised signing, compare outside the 64-byte signatures and verify
them instead).

    .venv/bin/python scripts/make_nfc_vectors.py [--check]

--check exits 1 if the files on disk differ from what would be written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from passbridge.bridge.reader_driver import settle  # noqa: E402
from passbridge.protocol.aliro_crypto import (  # noqa: E402
    ENDPOINT_CONTEXT,
    LABEL_PERSISTENT,
    LABEL_VOLATILE,
    LABEL_VOLATILE_FAST,
    READER_CONTEXT,
    authentication_data,
    decrypt_cryptogram,
    ecdh_shared_x,
    private_key_from_scalar,
    private_scalar,
    public_key_bytes,
    x_coordinate,
)
from passbridge.protocol.aliro_phone import PhoneApplet  # noqa: E402
from passbridge.protocol.aliro_reader import (  # noqa: E402
    Authenticated,
    Finished,
    ReaderIdentity,
    ReaderTransaction,
    SendCommand,
)
from passbridge.protocol.exchange_status import exchange_status, is_success  # noqa: E402

OUT = ROOT / "protocols" / "nfc" / "vectors"


def scalar(label: str) -> bytes:
    """A fixed private scalar from a label (valid for P-256 with overwhelming odds)."""
    return hashlib.sha256(b"passbridge nfc vector " + label.encode()).digest()


def fixed(label: str, n: int) -> bytes:
    return hashlib.sha256(b"passbridge nfc vector id " + label.encode()).digest()[:n]


class Directory:
    def __init__(self, credential_id: str, public_key: bytes,
                 kpersistent: bytes | None = None) -> None:
        self.credential_id = credential_id
        self.public_key = public_key
        self.kpersistent = kpersistent

    def credential_for_public_key(self, public_key: bytes) -> str | None:
        return self.credential_id if public_key == self.public_key else None

    def persistent_keys(self) -> Iterable[tuple[str, bytes, bytes]]:
        if self.kpersistent is None:
            return []
        return [(self.credential_id, self.public_key, self.kpersistent)]

    def remember_persistent_key(self, credential_id: str, public_key: bytes,
                                kpersistent: bytes) -> None:
        self.kpersistent = kpersistent


def run(name: str, flow: str, *, prefer_fast: bool, phone_has_kpersistent: bool,
        reader_has_kpersistent: bool, decision: tuple[str, str],
        kpersistent: bytes | None) -> dict[str, Any]:
    """One tap; ``decision`` is the door decision's (result, reason) the EXCHANGE reports."""
    status = exchange_status(*decision)
    reader_key = private_key_from_scalar(scalar("reader long-term"))
    credential_key = private_key_from_scalar(scalar("phone credential"))
    reader_eph = private_key_from_scalar(scalar(f"{name} reader ephemeral"))
    phone_eph = private_key_from_scalar(scalar(f"{name} phone ephemeral"))
    txid = fixed(f"{name} transaction", 16)
    group_id, sub_id = fixed("group", 16), fixed("sub", 16)
    identity = ReaderIdentity(reader_key, group_id, sub_id)
    credential_pub = public_key_bytes(credential_key)
    directory = Directory("cred-0001", credential_pub,
                          kpersistent if reader_has_kpersistent else None)
    store = {group_id: kpersistent} if phone_has_kpersistent and kpersistent else {}
    reader = ReaderTransaction(identity, prefer_fast=prefer_fast,
                               ephemeral_private_key=reader_eph, transaction_id=txid,
                               deterministic_signatures=True)
    phone = PhoneApplet(credential_key, identity.public_key, ephemeral_private_key=phone_eph,
                        kpersistent_store=store, signaling_bitmap=bytes(2),
                        deterministic_signatures=True)
    steps = ["SELECT", f"AUTH0 ({'fast' if prefer_fast else 'standard'})"]
    apdus: list[dict[str, str]] = []
    command = reader.start()
    authenticated: Authenticated | None = None
    while True:
        answer = phone.process(command)
        step = steps[len(apdus)] if len(apdus) < len(steps) else (
            "EXCHANGE (reader status)" if authenticated else "AUTH1")
        apdus.append({"step": step, "c_apdu": command.hex(), "r_apdu": answer.hex()})
        event = settle(reader, reader.receive(answer), directory)
        if isinstance(event, SendCommand):
            command = event.apdu
        elif isinstance(event, Authenticated):
            authenticated = event
            command = reader.door_status(status)
        elif isinstance(event, Finished):
            break
        else:
            raise SystemExit(f"{name}: transaction failed: {event}")
    assert authenticated is not None and authenticated.flow == flow
    assert phone.last_reader_status == status
    assert phone.last_door_status is is_success(status)

    salt_inputs = reader.keys.salt_inputs
    assert salt_inputs is not None
    reader_eph_x = x_coordinate(public_key_bytes(reader_eph))
    phone_eph_x = x_coordinate(public_key_bytes(phone_eph))
    intermediates: dict[str, str] = {
        "reader_authentication_data": authentication_data(
            identity.reader_id, phone_eph_x, reader_eph_x, txid, READER_CONTEXT).hex(),
        "endpoint_authentication_data": authentication_data(
            identity.reader_id, phone_eph_x, reader_eph_x, txid, ENDPOINT_CONTEXT).hex(),
        "ecdh_Z": ecdh_shared_x(reader_eph, public_key_bytes(phone_eph)).hex(),
    }
    keys = reader.keys
    if keys.volatile is not None and keys.kdh is not None:
        intermediates.update({
            "Kdh": keys.kdh.hex(),
            "session_salt": salt_inputs.salt(LABEL_VOLATILE).hex(),
            "persistent_salt": salt_inputs.salt(
                LABEL_PERSISTENT, x_coordinate(credential_pub)).hex(),
            "ExpeditedSKReader": keys.volatile.exchange_sk_reader.hex(),
            "ExpeditedSKDevice": keys.volatile.exchange_sk_device.hex(),
            "StepUpSK": keys.volatile.step_up_sk.hex(),
            "BleSK": keys.volatile.ble_sk.hex(),
            "URSK": keys.volatile.ursk.hex(),
            "Kpersistent": (keys.kpersistent or b"").hex(),
        })
    if keys.fast is not None:
        auth0_answer = bytes.fromhex(apdus[1]["r_apdu"])
        cryptogram = auth0_answer[2 + 65 + 2 : 2 + 65 + 2 + 64]
        intermediates.update({
            "fast_salt": salt_inputs.salt(
                LABEL_VOLATILE_FAST, x_coordinate(credential_pub)).hex(),
            "CryptogramSK": keys.fast.cryptogram_sk.hex(),
            "cryptogram_plaintext": decrypt_cryptogram(keys.fast.cryptogram_sk,
                                                       cryptogram).hex(),
            "ExpeditedSKReader": keys.fast.exchange_sk_reader.hex(),
            "ExpeditedSKDevice": keys.fast.exchange_sk_device.hex(),
            "BleSK": keys.fast.ble_sk.hex(),
            "URSK": keys.fast.ursk.hex(),
        })
    inputs: dict[str, str] = {
        "reader_private_key": private_scalar(reader_key).hex(),
        "reader_public_key": identity.public_key.hex(),
        "reader_group_identifier": group_id.hex(),
        "reader_group_sub_identifier": sub_id.hex(),
        "reader_ephemeral_private_key": private_scalar(reader_eph).hex(),
        "reader_ephemeral_public_key": public_key_bytes(reader_eph).hex(),
        "transaction_identifier": txid.hex(),
        "command_parameters": "01" if prefer_fast else "00",
        "authentication_policy": "01",
        "protocol_version": "0100",
        "interface": "5e",
        "credential_private_key": private_scalar(credential_key).hex(),
        "credential_public_key": credential_pub.hex(),
        "endpoint_ephemeral_private_key": private_scalar(phone_eph).hex(),
        "endpoint_ephemeral_public_key": public_key_bytes(phone_eph).hex(),
        "signaling_bitmap": "0000",
        "decision_result": decision[0],
        "decision_reason": decision[1],
        "reader_status": f"{status:04x}",
    }
    if kpersistent is not None and (phone_has_kpersistent or reader_has_kpersistent):
        inputs["Kpersistent_phone"] = kpersistent.hex() if phone_has_kpersistent else ""
        inputs["Kpersistent_reader"] = kpersistent.hex() if reader_has_kpersistent else ""
    return {
        "id": name,
        "origin": "passbridge scripts/make_nfc_vectors.py (both roles of passbridge's own code)",
        "hex": "lowercase hex, no separators; APDUs include header and status word",
        "protocol_version": "0100",
        "flow": flow,
        "signatures": "ECDSA P-256 SHA-256 raw r||s with RFC 6979 deterministic nonces on "
                      "both sides; with randomised signing compare outside the 9E values "
                      "and verify them",
        "inputs": inputs,
        "apdus": apdus,
        "intermediates": intermediates,
        "expected": {"credential_id": authenticated.credential_id, "flow": flow,
                     "phone_reader_status": f"{status:04x}",
                     "phone_last_door_status": is_success(status)},
    }


def build() -> dict[str, dict[str, Any]]:
    standard = run("passbridge-standard-v1", "standard", prefer_fast=False,
                   phone_has_kpersistent=False, reader_has_kpersistent=False,
                   decision=("granted", "access_granted"), kpersistent=None)
    kp = bytes.fromhex(standard["intermediates"]["Kpersistent"])
    fast = run("passbridge-fast-v1", "fast", prefer_fast=True, phone_has_kpersistent=True,
               reader_has_kpersistent=True, decision=("granted", "access_granted"),
               kpersistent=kp)
    fallback = run("passbridge-fast-fallback-v1", "standard", prefer_fast=True,
                   phone_has_kpersistent=True, reader_has_kpersistent=False,
                   decision=("denied", "no_access"), kpersistent=kp)
    fallback["note"] = ("FAST requested and a cryptogram answered, but the reader holds no "
                        "matching persistent key: the same tap continues with AUTH1; every "
                        "salt uses command_parameters 01 as sent in AUTH0")
    denied = run("passbridge-standard-denied-v1", "standard", prefer_fast=False,
                 phone_has_kpersistent=False, reader_has_kpersistent=False,
                 decision=("denied", "door_locked"), kpersistent=None)
    denied["note"] = ("a STANDARD tap on a locked door: the phone authenticates, the door "
                      "refuses, EXCHANGE says 0025 (invalid access rights)")
    pending = run("passbridge-fast-pending-v1", "fast", prefer_fast=True,
                  phone_has_kpersistent=True, reader_has_kpersistent=True,
                  decision=("pending", "pin_required"), kpersistent=kp)
    pending["note"] = ("a FAST tap on a two-factor door: the card step is accepted and the "
                       "door stays locked until the entry code, EXCHANGE says 0100 (reader "
                       "state secured, a success code)")
    return {f"{v['id']}.json": v for v in (standard, fast, fallback, denied, pending)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    stale = False
    for filename, vector in build().items():
        text = json.dumps(vector, indent=1) + "\n"
        path = OUT / filename
        if args.check:
            if not path.exists() or path.read_text() != text:
                print(f"stale: {path}")
                stale = True
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
