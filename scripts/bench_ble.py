"""Benchmark the BLE edge, each figure against a baseline measured in the same run.

1. Bluetooth unlocks/s end to end: bleak's BleakClient on the bumble backend,
   real ATT/GATT, framed APDUs, a full STANDARD authentication (interface C3)
   against a simulated phone running PhoneApplet, connect to disconnect.
   Baselines: the same two roles exchanging APDUs in memory (no radio), and
   the raw cost of the public-key primitives one authentication needs
   (2 key generations, 2 ECDH, 2 signatures, 2 verifications).
2. Advertisements/s absorbed by ProximityTable with 10,000 phones in view,
   through the scanner's detection callback (service data parse included)
   and through ``observe`` alone. Baseline: a plain dict update per advert.
3. Rotating ids resolved/s by AdvertResolver with 10,000 enrolled phones
   (three slots of precomputed ids), and the cost of making one slot's
   table. Baselines: a plain dict lookup per id, and one HMAC per phone.

    .venv/bin/python scripts/bench_ble.py [--unlocks N] [--adverts N] [--resolves N]


Numbers are noisy on a shared 2-vCPU machine; the ratios are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bleak.backends.device import BLEDevice  # noqa: E402
from bleak.backends.scanner import AdvertisementData  # noqa: E402

from passbridge.adapters.ble_central import (  # noqa: E402
    BleLink,
    BleUnlockClient,
    ProximityScanner,
    ProximityTable,
)
from passbridge.adapters.ble_settings import BleSettings  # noqa: E402
from passbridge.bridge.ble_unlock import drive_reader  # noqa: E402
from passbridge.bridge.proximity import AdvertResolver  # noqa: E402
from passbridge.bridge.reader_driver import InMemoryCredentials, settle  # noqa: E402
from passbridge.clock import SystemClock  # noqa: E402
from passbridge.protocol.aliro_crypto import (  # noqa: E402
    Interface,
    ecdh_shared_x,
    generate_ephemeral,
    public_key_bytes,
    sign_raw,
    verify_raw,
)
from passbridge.protocol.aliro_phone import PhoneApplet  # noqa: E402
from passbridge.protocol.aliro_reader import (  # noqa: E402
    Authenticated,
    Finished,
    ReaderIdentity,
    ReaderTransaction,
    SendCommand,
)
from passbridge.protocol.ble_advert import (  # noqa: E402
    SERVICE_UUID,
    new_adv_id,
    rotating_id,
    service_data,
    slot_at,
)
from passbridge.protocol.exchange_status import ReaderStatus  # noqa: E402
from passbridge.sim.ble_phone import SimulatedBlePhone  # noqa: E402
from passbridge.sim.bleak_bumble import BumbleAir  # noqa: E402


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def site() -> tuple[ReaderIdentity, InMemoryCredentials, PhoneApplet]:
    identity = ReaderIdentity(generate_ephemeral(), b"G" * 16, b"S" * 16)
    applet = PhoneApplet(generate_ephemeral(), identity.public_key, interface=Interface.BLE)
    credentials = InMemoryCredentials({applet.credential_public_key: "cred-bench"})
    return identity, credentials, applet


async def unlocks_over_gatt(n: int) -> float:
    identity, credentials, applet = site()
    air = BumbleAir()
    phone = SimulatedBlePhone(air, applet.process)
    await phone.start()
    client = BleUnlockClient(backend=air.client_backend, settings=BleSettings(cooldown_seconds=0.0))

    async def grant(_: Authenticated) -> tuple[bool, int]:
        return True, int(ReaderStatus.STATE_UNSECURED)

    async def handler(link: BleLink) -> bool:
        transaction = ReaderTransaction(identity, interface=Interface.BLE, prefer_fast=False)
        outcome = await drive_reader(link, transaction, credentials, grant)
        return outcome.granted and outcome.finished

    assert await client.run(phone.address, handler)  # warm-up
    start = time.perf_counter()
    for _ in range(n):
        if not await client.run(phone.address, handler):
            raise SystemExit("an unlock failed during the benchmark")
    elapsed = time.perf_counter() - start
    await phone.close()
    await air.close()
    return rate(n, elapsed)


def unlocks_in_memory(n: int) -> float:
    identity, credentials, applet = site()
    start = time.perf_counter()
    for _ in range(n):
        reader = ReaderTransaction(identity, interface=Interface.BLE, prefer_fast=False)
        event = reader.receive(applet.process(reader.start()))
        while isinstance(event, SendCommand):
            event = settle(reader, reader.receive(applet.process(event.apdu)), credentials)
        assert isinstance(event, Authenticated)
        opened = reader.door_status(ReaderStatus.STATE_UNSECURED)
        assert isinstance(reader.receive(applet.process(opened)), Finished)
    return rate(n, time.perf_counter() - start)


def crypto_floor(n: int) -> float:
    """Authentications/s if only the public-key primitives cost anything."""
    signer = generate_ephemeral()
    signer_public = public_key_bytes(signer)
    data = b"\x4d" * 120
    signature = sign_raw(signer, data)
    start = time.perf_counter()
    for _ in range(n):
        reader_eph, phone_eph = generate_ephemeral(), generate_ephemeral()
        ecdh_shared_x(reader_eph, public_key_bytes(phone_eph))
        ecdh_shared_x(phone_eph, public_key_bytes(reader_eph))
        sign_raw(signer, data)
        sign_raw(signer, data)
        verify_raw(signer_public, signature, data)
        verify_raw(signer_public, signature, data)
    return rate(n, time.perf_counter() - start)


def adverts(n: int, phones: int = 10_000) -> tuple[float, float, float]:
    rng = random.Random(7)
    ids = [new_adv_id() for _ in range(phones)]
    devices = [
        BLEDevice(f"C0:00:00:{i >> 16 & 255:02X}:{i >> 8 & 255:02X}:{i & 255:02X}", None, None)
        for i in range(phones)
    ]
    ads = [
        AdvertisementData(None, {}, {SERVICE_UUID: service_data(adv_id)}, [SERVICE_UUID], None,
                          rng.randint(-95, -40), ())
        for adv_id in ids
    ]
    order = [rng.randrange(phones) for _ in range(n)]
    clock = SystemClock()

    baseline: dict[bytes, tuple[int, float]] = {}
    start = time.perf_counter()
    for k in order:
        baseline[ids[k]] = (ads[k].rssi, clock.elapsed())
    dict_rate = rate(n, time.perf_counter() - start)

    table = ProximityTable(clock)
    start = time.perf_counter()
    for k in order:
        table.observe(ids[k], ads[k].rssi)
    observe_rate = rate(n, time.perf_counter() - start)

    scanner_table = ProximityTable(clock)
    scanner = ProximityScanner.__new__(ProximityScanner)  # callback only, no radio
    scanner.table, scanner.observed, scanner.ignored = scanner_table, 0, 0
    start = time.perf_counter()
    for k in order:
        scanner.on_advertisement(devices[k], ads[k])
    callback_rate = rate(n, time.perf_counter() - start)
    assert len(scanner_table) == len(set(order))
    return dict_rate, observe_rate, callback_rate


class _Keys:
    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        self.keys = keys

    def proximity_keys(self) -> list[tuple[str, bytes]]:
        return self.keys

    def proximity_version(self) -> tuple[int, ...]:
        return (1,)


def resolves(n: int, phones: int = 10_000) -> tuple[float, float, float, float]:
    """(dict lookups/s, resolves/s, HMACs/s, slot tables/s)."""
    rng = random.Random(11)
    keys = [(f"phone-{i}", rng.randbytes(32)) for i in range(phones)]
    clock = SystemClock()
    slot = slot_at(clock.now().timestamp())
    ids = [rotating_id(key, slot) for _, key in keys]
    plain = {adv_id: cred for adv_id, (cred, _) in zip(ids, keys, strict=True)}
    order = [ids[rng.randrange(phones)] for _ in range(n)]
    start = time.perf_counter()
    for adv_id in order:
        plain.get(adv_id)
    dict_rate = rate(n, time.perf_counter() - start)
    resolver = AdvertResolver(_Keys(keys), clock)
    resolver.resolve(ids[0])  # builds the three slot tables once
    start = time.perf_counter()
    for adv_id in order:
        resolver.resolve(adv_id)
    resolve_rate = rate(n, time.perf_counter() - start)
    start = time.perf_counter()
    for _, key in keys:
        rotating_id(key, slot + 7)
    hmac_rate = rate(phones, time.perf_counter() - start)
    start = time.perf_counter()
    fresh = AdvertResolver(_Keys(keys), clock)
    fresh.resolve(ids[0])  # three slot tables from nothing
    tables_rate = rate(3, time.perf_counter() - start)
    return dict_rate, resolve_rate, hmac_rate, tables_rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unlocks", type=int, default=100)
    parser.add_argument("--adverts", type=int, default=200_000)
    parser.add_argument("--resolves", type=int, default=100_000)
    args = parser.parse_args()

    gatt = asyncio.run(unlocks_over_gatt(args.unlocks))
    memory = unlocks_in_memory(args.unlocks)
    floor = crypto_floor(args.unlocks)
    print(f"Bluetooth unlocks/s, bleak+bumble GATT end to end: {gatt:8.1f}")
    print(f"  same authentication in memory (no radio):       {memory:8.1f}"
          f"  (GATT path at {gatt / memory:.2f}x of it)")
    print(f"  public-key primitives only (2 keygen, 2 ECDH, 2 sign, 2 verify): {floor:8.1f}"
          f"  (GATT path at {gatt / floor:.2f}x of it)")

    dict_rate, observe_rate, callback_rate = adverts(args.adverts)
    print(f"adverts/s absorbed, 10,000 phones in view ({args.adverts} adverts):")
    print(f"  plain dict update (baseline):          {dict_rate:12,.0f}")
    print(f"  ProximityTable.observe:                {observe_rate:12,.0f}"
          f"  ({observe_rate / dict_rate:.2f}x of baseline)")
    print(f"  scanner callback (parse + observe):    {callback_rate:12,.0f}"
          f"  ({callback_rate / dict_rate:.2f}x of baseline)")

    lookup_rate, resolve_rate, hmac_rate, tables_rate = resolves(args.resolves)
    print(f"rotating ids resolved/s, 10,000 enrolled phones ({args.resolves} lookups):")
    print(f"  plain dict lookup (baseline):          {lookup_rate:12,.0f}")
    print(f"  AdvertResolver.resolve:                {resolve_rate:12,.0f}"
          f"  ({resolve_rate / lookup_rate:.2f}x of baseline)")
    slot_ms = 1000 / tables_rate
    print(f"  one slot table for 10,000 phones:      {slot_ms:12.1f} ms"
          f"  ({hmac_rate / 10_000 * slot_ms / 1000:.2f}x of 10,000 bare HMACs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
