#!/usr/bin/env python3
"""NFC tap benchmark: round trips, bytes, reader CPU against raw crypto, taps/s over udp.

Every ratio is against a baseline measured in this same run (the raw cost of
the reader's cryptography, timed on the aliro_crypto primitives directly),
so the verdicts hold on a slow or noisy machine. Absolute times are printed
for information only.

    .venv/bin/python scripts/bench_nfc.py [--taps N]

Targets: reader protocol CPU <= 1.5x raw crypto; STANDARD <= 4 and FAST <= 3
APDU round trips. Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nfc  # noqa: E402

from passbridge.adapters.nfc_reader import Decide, Exchange, NfcReader, TapOutcome  # noqa: E402
from passbridge.protocol import aliro_messages as msg  # noqa: E402
from passbridge.protocol.aliro_crypto import (  # noqa: E402
    ENDPOINT_CONTEXT,
    READER_CONTEXT,
    authentication_data,
    decrypt_cryptogram,
    derive_fast_keys,
    derive_kdh,
    derive_kpersistent,
    derive_volatile_keys,
    encrypt_cryptogram,
    gcm_decrypt,
    gcm_encrypt,
    generate_ephemeral,
    load_public_key,
    public_key_bytes,
    sign_raw,
    verify_raw,
    x_coordinate,
)
from passbridge.protocol.aliro_phone import PhoneApplet  # noqa: E402
from passbridge.protocol.aliro_reader import (  # noqa: E402
    Authenticated,
    Finished,
    InMemoryCredentials,
    ReaderIdentity,
    ReaderTransaction,
    SendCommand,
)
from passbridge.sim.nfc_card import SimulatedCard  # noqa: E402

TARGET_RATIO = 1.5
TARGET_ROUND_TRIPS = {"standard": 4, "fast": 3}


@dataclass
class Site:
    identity: ReaderIdentity
    credentials: InMemoryCredentials
    phone: PhoneApplet


def make_site() -> Site:
    identity = ReaderIdentity(generate_ephemeral(), secrets.token_bytes(16),
                              secrets.token_bytes(16))
    phone = PhoneApplet(generate_ephemeral(), identity.public_key)
    credentials = InMemoryCredentials()
    credentials.enrol("cred-bench", phone.credential_public_key)
    return Site(identity, credentials, phone)


class AliroTap:
    """One tap of the reader role, the way a bridge drives it."""

    def __init__(self, site: Site, fast: bool) -> None:
        self.site = site
        self.fast = fast
        self.transaction: ReaderTransaction | None = None

    def run(self, exchange: Exchange, decide: Decide) -> str:
        tx = self.transaction = ReaderTransaction(
            self.site.identity, self.site.credentials, prefer_fast=self.fast)
        event = tx.receive(exchange(tx.start()))
        while isinstance(event, SendCommand):
            event = tx.receive(exchange(event.apdu))
        if not isinstance(event, Authenticated):
            raise RuntimeError(f"tap failed: {event}")
        end = tx.receive(exchange(tx.door_status(decide(event))))
        if not isinstance(end, Finished):
            raise RuntimeError(f"tap failed at EXCHANGE: {end}")
        return event.flow


# ------------------------------------------------------------------ sans-I/O protocol


@dataclass
class ProtocolRun:
    reader_cpu: float
    round_trips: int
    sent: int
    received: int
    transaction: ReaderTransaction
    phone_answers: list[bytes]


def protocol_tap(site: Site, fast: bool) -> ProtocolRun:
    """One tap in memory; only the reader's own calls are on the CPU clock."""
    spent = 0.0
    trips = sent = received = 0
    answers: list[bytes] = []

    def exchange(apdu: bytes) -> bytes:
        nonlocal spent, trips, sent, received
        spent += time.thread_time() - mark[0]
        answer = site.phone.process(apdu)
        answers.append(answer)
        trips += 1
        sent += len(apdu)
        received += len(answer)
        mark[0] = time.thread_time()
        return answer

    tap = AliroTap(site, fast)
    mark = [time.thread_time()]
    flow = tap.run(exchange, lambda request: True)
    spent += time.thread_time() - mark[0]
    assert flow == ("fast" if fast else "standard"), flow
    assert tap.transaction is not None
    return ProtocolRun(spent, trips, sent, received, tap.transaction, answers)


# ------------------------------------------------------------------ raw crypto baseline


def cpu_per_call(fn: Callable[[], object], repeat: int) -> float:
    """Median CPU seconds of one call over five batches."""
    batches = []
    for _ in range(5):
        start = time.thread_time()
        for _ in range(repeat):
            fn()
        batches.append((time.thread_time() - start) / repeat)
    return statistics.median(batches)


def raw_crypto(site: Site, standard: ProtocolRun, repeat: int) -> dict[str, dict[str, float]]:
    """The reader's cryptography per tap, primitive by primitive."""
    keys = standard.transaction.keys
    assert keys.salt_inputs is not None and keys.kdh is not None
    salt = keys.salt_inputs
    tx_id = standard.transaction.transaction_id
    phone_key = site.phone.credential_public_key
    phone_private = generate_ephemeral()
    phone_eph = public_key_bytes(generate_ephemeral())
    endpoint_x = x_coordinate(phone_eph)
    reader_eph = generate_ephemeral()
    key, iv = secrets.token_bytes(32), secrets.token_bytes(12)
    # Ciphertexts as long as the real ones: the AUTH1 and EXCHANGE answers.
    auth1_ct = gcm_encrypt(key, iv, bytes(len(standard.phone_answers[2]) - 2 - 16))
    exchange_len = max(len(standard.phone_answers[3]) - 2 - 16, 0)
    exchange_ct = gcm_encrypt(key, iv, bytes(exchange_len))
    status = msg.reader_status_plaintext(True)
    signed = authentication_data(salt.reader_id, endpoint_x, x_coordinate(public_key_bytes(
        reader_eph)), tx_id, READER_CONTEXT)
    phone_signed = authentication_data(salt.reader_id, endpoint_x, x_coordinate(
        public_key_bytes(reader_eph)), tx_id, ENDPOINT_CONTEXT)
    phone_sig = sign_raw(phone_private, phone_signed)
    phone_pub = public_key_bytes(phone_private)
    kpersistent = derive_kpersistent(keys.kdh, salt, endpoint_x, phone_key)
    fast_keys = derive_fast_keys(kpersistent, salt, endpoint_x, phone_key)
    cryptogram = encrypt_cryptogram(fast_keys.cryptogram_sk, bytes(48))

    common = {
        "ephemeral keygen": lambda: public_key_bytes(generate_ephemeral()),
        "P-256 point check (phone eph.)": lambda: load_public_key(phone_eph),
        "GCM encrypt door status": lambda: gcm_encrypt(key, iv, status),
        "GCM decrypt EXCHANGE answer": (
            (lambda: gcm_decrypt(key, iv, exchange_ct)) if exchange_len else (lambda: None)),
    }
    standard_ops: dict[str, Callable[[], object]] = {
        **common,
        "ECDH + X9.63 KDF": lambda: derive_kdh(reader_eph, phone_eph, tx_id),
        "HKDF volatile keys": lambda: derive_volatile_keys(keys.kdh or b"", salt, endpoint_x),
        "ECDSA sign": lambda: sign_raw(site.identity.private_key, signed),
        "GCM decrypt AUTH1 answer": lambda: gcm_decrypt(key, iv, auth1_ct),
        "ECDSA verify": lambda: verify_raw(phone_pub, phone_sig, phone_signed),
        "HKDF Kpersistent": lambda: derive_kpersistent(keys.kdh or b"", salt, endpoint_x,
                                                       phone_key),
    }
    fast_ops: dict[str, Callable[[], object]] = {
        **common,
        "HKDF FAST keys": lambda: derive_fast_keys(kpersistent, salt, endpoint_x, phone_key),
        "GCM decrypt cryptogram": lambda: decrypt_cryptogram(fast_keys.cryptogram_sk,
                                                             cryptogram),
    }
    return {
        "standard": {name: cpu_per_call(fn, repeat) for name, fn in standard_ops.items()},
        "fast": {name: cpu_per_call(fn, repeat) for name, fn in fast_ops.items()},
    }


# ------------------------------------------------------------------ over nfcpy udp


async def reader_taps(site: Site, fast: bool, taps: int) -> list[TapOutcome[str]]:
    """Taps through NfcReader and the simulated card, the phone leaving between taps."""
    async def grant(request: object) -> bool:
        return True

    outcomes: list[TapOutcome[str]] = []
    with SimulatedCard(site.phone.process) as card:
        async with NfcReader(card.device, lambda: AliroTap(site, fast), decider=grant) as reader:
            for _ in range(taps):
                outcome = await reader.tap_once(10.0)
                if not outcome.ok:
                    raise RuntimeError(f"tap over udp failed: {outcome.error}")
                outcomes.append(outcome)
                card.leave_field()
                await asyncio.sleep(0.1)
                card.enter_field()
    return outcomes


def back_to_back(site: Site, fast: bool, taps: int) -> float:
    """Taps per second with sense, activation and transaction, no debounce wait."""
    with SimulatedCard(site.phone.process) as card:
        clf = nfc.ContactlessFrontend(card.device)
        done = 0

        def on_connect(tag: Any) -> bool:
            nonlocal done
            AliroTap(site, fast).run(lambda apdu: bytes(tag.transceive(apdu)),
                                     lambda request: True)
            done += 1
            return False

        try:
            started = time.perf_counter()
            while done < taps:
                clf.connect(rdwr={"targets": ["106A"], "on-connect": on_connect,
                                  "beep-on-connect": False})
            return taps / (time.perf_counter() - started)
        finally:
            clf.close()


# ------------------------------------------------------------------ report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taps", type=int, default=20, help="taps per flow over udp")
    parser.add_argument("--repeat", type=int, default=200, help="calls per crypto batch")
    args = parser.parse_args()

    site = make_site()
    protocol_tap(site, fast=False)  # warm up and give the reader a persistent key
    runs = {
        "standard": [protocol_tap(site, fast=False) for _ in range(max(args.repeat // 4, 10))],
        "fast": [protocol_tap(site, fast=True) for _ in range(max(args.repeat // 4, 10))],
    }
    raw = raw_crypto(site, runs["standard"][0], args.repeat)
    udp = {flow: asyncio.run(reader_taps(site, flow == "fast", args.taps)) for flow in runs}
    rates = {flow: back_to_back(site, flow == "fast", args.taps) for flow in runs}

    failures: list[str] = []
    for flow in ("standard", "fast"):
        first = runs[flow][0]
        raw_total = sum(raw[flow].values())
        protocol_cpu = statistics.median(r.reader_cpu for r in runs[flow])
        udp_cpu = statistics.median(o.cpu_seconds for o in udp[flow])
        udp_trips = {o.apdus for o in udp[flow]}
        ratio = protocol_cpu / raw_total
        print(f"== {flow.upper()} tap")
        print(f"  APDU round trips       {first.round_trips} (over udp: "
              f"{sorted(udp_trips)}; target <= {TARGET_ROUND_TRIPS[flow]})")
        print(f"  bytes reader -> phone  {first.sent}")
        print(f"  bytes phone -> reader  {first.received}")
        print("  raw reader crypto per tap (CPU):")
        for name, seconds in raw[flow].items():
            print(f"    {name:<28} {seconds * 1e6:8.1f} us")
        print(f"    {'total':<28} {raw_total * 1e6:8.1f} us")
        print(f"  reader protocol CPU    {protocol_cpu * 1e6:8.1f} us = {ratio:.2f}x raw crypto "
              f"(target <= {TARGET_RATIO}x)")
        print(f"  reader thread CPU over nfcpy udp (protocol + ISO-DEP + driver) "
              f"{udp_cpu * 1e6:8.1f} us = {udp_cpu / raw_total:.2f}x raw crypto")
        print(f"  taps/s over udp, back to back (sense + activation + transaction): "
              f"{rates[flow]:.1f}")
        durations = [o.duration for o in udp[flow]]
        print(f"  transaction time over udp (activation to result), median: "
              f"{statistics.median(durations) * 1e3:.2f} ms")
        if max(udp_trips | {first.round_trips}) > TARGET_ROUND_TRIPS[flow]:
            failures.append(f"{flow}: {max(udp_trips)} round trips")
        if ratio > TARGET_RATIO:
            failures.append(f"{flow}: protocol CPU {ratio:.2f}x raw crypto")
    print("== verdict:", "all targets met" if not failures else "; ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
