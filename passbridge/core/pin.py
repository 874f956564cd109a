"""Entry codes are kept only as keyed hashes and compared in constant time.

A 4-16 digit code has too little entropy for a plain hash to hide it, so the
hash is keyed (HMAC-SHA256) with a per-installation secret that never lives
in the site file; a copy of the site file or the database alone does not give
the codes away.
"""

from __future__ import annotations

import hashlib
import hmac


def pin_hash(pin_key: bytes, code: str) -> bytes:
    return hmac.new(pin_key, code.encode("ascii", "replace"), hashlib.sha256).digest()


def pin_matches(pin_key: bytes, code: str, stored_hash: bytes | None) -> bool:
    if stored_hash is None:
        # Still spend the hash so a missing code costs the same time as a wrong one.
        hmac.compare_digest(pin_hash(pin_key, code), bytes(32))
        return False
    return hmac.compare_digest(pin_hash(pin_key, code), stored_hash)
