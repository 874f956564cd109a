"""The in-process vouch: tokens this process minted, which its core need not re-verify."""

from __future__ import annotations

import hashlib
import threading

from passbridge.core.tokens.keys import PublicKey


class MintedTokens:
    """The exact tokens this process's own minter signed, for its own verifier.

    When the in-process bridge and the core share a process, the core may
    trust a token without checking its ECDSA signature again IF it can tell
    that these are exactly the bytes the minter produced: the minter signed
    them with its key a moment ago, so the signature is good by construction.
    The record holds the SHA-256 digest of each minted token (never the
    token) and is consulted by a dict lookup on the digest of the presented
    bytes: forged or altered bytes cannot have a recorded digest, and the
    lookup's timing depends on that digest, not on how much of a genuine
    token an attacker guessed. A digest is taken out when it is used, so it
    vouches once; a second presentation of the same bytes is verified in
    full (and is then a replay). Only the signature step is skipped: the
    header, key pinning, every claim, the times and the single-use ``jti``
    are checked exactly as for any token.

    Bounded: beyond ``max_entries`` the oldest digests are forgotten, and a
    token whose digest was forgotten is simply verified in full. The
    verifier accepts the vouch only for a key of its trust list that holds
    the minter's own public key (see FactorTokenVerifier).
    """

    def __init__(self, public_key: PublicKey, *, max_entries: int = 1024) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.public_key = public_key
        self.max_entries = max_entries
        self.vouched = 0  # how many tokens skipped the signature check (for tests, metrics)
        self._digests: dict[bytes, None] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._digests)

    def add(self, token: str) -> None:
        digest = hashlib.sha256(token.encode("ascii")).digest()
        with self._lock:
            digests = self._digests
            while len(digests) >= self.max_entries:
                del digests[next(iter(digests))]  # the oldest
            digests[digest] = None

    def take(self, token: bytes) -> bool:
        """Whether these exact bytes were minted here and not yet used; uses them up."""
        digest = hashlib.sha256(token).digest()
        with self._lock:
            if digest not in self._digests:
                return False
            del self._digests[digest]
            self.vouched += 1
            return True
