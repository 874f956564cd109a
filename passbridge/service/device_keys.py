"""Device keys: what a wired reader or keypad (or a simulated radio) presents.

One key per wired device side of the site: a key names its door, its side
and its kind (reader or keypad), so a key taken from the garage keypad
cannot type at the front door, read a card or speak for an exit reader. The
key store keeps each secret sealed at rest; ``serve`` makes the missing
ones on start and never prints a secret (``passbridge keys device list
--show-secret`` does, for provisioning). The key is read from the store on
each request, so a rotation takes effect at once, with no restart.

A device presents ``<id>.<secret>``. The id is public and finds the key;
the secret is compared in constant time (``hmac.compare_digest`` of SHA-256
digests, also when the id is unknown, so the two refusals cost the same).
"""

from __future__ import annotations

import hashlib
import hmac

from passbridge.adapters.keystore import DeviceKey, DeviceKind, DeviceSlot, KeyStore
from passbridge.core.model import Side, Site

# Far above any real token (``dk-`` + 16 hex + ``.`` + 43 characters).
MAX_PRESENTED_CHARS = 256
_NO_KEY = hashlib.sha256(b"passbridge: no such device key").digest()


def device_slots(site: Site) -> list[DeviceSlot]:
    """Every wired device side of the site: a reader on the entry side of each
    door with one, on the exit side of In/Out doors too, and the keypad (on
    the entry side, rules.md) of each door with one."""
    slots: list[DeviceSlot] = []
    for door in site.doors.values():
        if door.reader:
            slots.append((door.id, Side.IN, DeviceKind.READER))
            if door.in_out:
                slots.append((door.id, Side.OUT, DeviceKind.READER))
        if door.keypad:
            slots.append((door.id, Side.IN, DeviceKind.KEYPAD))
    return slots


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "replace")).digest()


class DeviceKeys:
    """The service's view of the device keys in its key store."""

    def __init__(self, keystore: KeyStore) -> None:
        self._keystore = keystore

    def ensure(self, site: Site) -> list[DeviceKey]:
        """Make the keys the site's wired devices lack; returns the new ones."""
        return self._keystore.ensure_device_keys(device_slots(site))

    def authenticate(self, presented: str) -> DeviceKey | None:
        """The key ``presented`` is, or None; the secret is compared in constant time."""
        key_id, dot, secret = presented.partition(".")
        known = None
        if dot and len(presented) <= MAX_PRESENTED_CHARS:
            known = self._keystore.device_key(key_id)
        expected = _digest(known.secret) if known is not None else _NO_KEY
        matches = hmac.compare_digest(_digest(secret), expected)
        return known if matches and known is not None else None
