"""The order one door's reader tries FAST persistent keys in.

A FAST cryptogram names no phone (by design: protocols/nfc/README.md), so
the reader finds the phone by trial, one key derivation and one AES-GCM
open per candidate, and tries at most ``MAX_FAST_TRIALS`` candidates before
the tap falls back to STANDARD in the same tap (Aliro's own fall-back, whose
cost does not grow with the number of phones). Which candidates come first
is what keeps FAST fast at a site with thousands of phones:

1. phones that authenticated at this reader lately (most recent first), so
   a returning phone is found in a few trials;
2. phones of users who may open this door, in site order;
3. every other phone holding a key.

The keys themselves come from the key store's in-memory copy (sealed at
rest, unsealed once per process, never logged). Only the candidate order is
decided here: a match is still checked against the enrolment in the key
store, and what the user may do is still the core's decision.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from passbridge.core.model import Site

__all__ = ["DoorPhones", "FastKeyOrder", "RECENT_PHONES"]

RECENT_PHONES = 256
"""Phones a reader remembers as recently authenticated (tried first)."""


class KeyedCredentials(Protocol):
    """What the order needs from the key store (adapters.keystore.KeyStore has it)."""

    def credential_for_public_key(self, public_key: bytes) -> str | None: ...

    def persistent_key(self, credential_id: str) -> tuple[bytes, bytes] | None: ...

    def persistent_keys(self) -> Iterable[tuple[str, bytes, bytes]]: ...

    def remember_persistent_key(self, credential_id: str, public_key: bytes,
                                kpersistent: bytes) -> None: ...


class DoorPhones:
    """Credential ids of the users who may open one door, recomputed only
    when the site object changes (a reload), never per tap."""

    def __init__(self, site: Callable[[], Site], door: str) -> None:
        self._site = site
        self._door = door
        self._seen: Site | None = None
        self._phones: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def __call__(self) -> tuple[str, ...]:
        site = self._site()
        with self._lock:
            if site is not self._seen:
                self._phones = tuple(phone for user in site.users.values()
                                     if user.may_open(self._door) for phone in user.phones)
                self._seen = site
            return self._phones


class FastKeyOrder:
    """A CredentialDirectory for one reader: the key store's keys, likeliest first.

    Thread safe: the reader thread taps, the event loop may reload the site.
    """

    def __init__(self, keys: KeyedCredentials, door_phones: Callable[[], Sequence[str]],
                 recent: int = RECENT_PHONES) -> None:
        self._keys = keys
        self._door_phones = door_phones
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._capacity = recent
        self._lock = threading.Lock()

    def credential_for_public_key(self, public_key: bytes) -> str | None:
        return self._keys.credential_for_public_key(public_key)

    def remember_persistent_key(self, credential_id: str, public_key: bytes,
                                kpersistent: bytes) -> None:
        self._keys.remember_persistent_key(credential_id, public_key, kpersistent)
        self.authenticated(credential_id)

    def authenticated(self, credential_id: str) -> None:
        """A phone proved itself at this reader: try its key first next time."""
        with self._lock:
            self._recent[credential_id] = None
            self._recent.move_to_end(credential_id, last=False)
            while len(self._recent) > self._capacity:
                self._recent.popitem(last=True)

    def persistent_keys(self) -> Iterator[tuple[str, bytes, bytes]]:
        """Lazily, so a tap pays only for the candidates it actually tries."""
        with self._lock:
            recent = list(self._recent)
        tried: set[str] = set()
        for group in (recent, self._door_phones()):
            for credential_id in group:
                if credential_id in tried:
                    continue
                tried.add(credential_id)
                found = self._keys.persistent_key(credential_id)
                if found is not None:
                    yield credential_id, found[0], found[1]
        for credential_id, public_key, kpersistent in self._keys.persistent_keys():
            if credential_id not in tried:
                yield credential_id, public_key, kpersistent
