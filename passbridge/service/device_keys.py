"""Device keys: the shared secret wired readers and keypads present.

The service keeps only SHA-256 digests and compares them in constant time.
A device key is a high-entropy random string (not a password), so a plain
hash is enough to keep a copy of the service's memory or state from being a
usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

DEVICE_KEY_BYTES = 32


def new_device_key() -> str:
    return secrets.token_urlsafe(DEVICE_KEY_BYTES)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "replace")).digest()


class DeviceKeys:
    def __init__(self, keys: list[str] | None = None) -> None:
        self._digests: list[bytes] = [_digest(k) for k in keys or []]

    def add(self, key: str) -> None:
        self._digests.append(_digest(key))

    def check(self, presented: str) -> bool:
        """True when ``presented`` is one of the keys; every key is compared."""
        digest = _digest(presented)
        found = False
        for known in self._digests:
            found |= hmac.compare_digest(digest, known)
        return found


def load_or_create_device_key(path: Path) -> str:
    """The key in ``path``, or a fresh one written there readable by the owner only."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        key = new_device_key()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(key + "\n")
        return key
    if len(text) < 16:
        raise ValueError(f"{path}: a device key must be at least 16 characters")
    return text
