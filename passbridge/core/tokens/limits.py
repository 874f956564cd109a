"""The numbers the token contract sets: sizes, lifetimes, leeway, ``jti`` lengths.

Kept together so that one file answers "how long may a token live" for
every kind of token; each verifier reads its own limit from here.
"""

from __future__ import annotations

MAX_TOKEN_BYTES = 4096
FACTOR_MAX_LIFETIME = 30.0
BACKEND_MAX_LIFETIME = 60.0
NEARBY_MAX_LIFETIME = 60.0
DEFAULT_LEEWAY = 5.0
# 128 random bits in URL-safe base64 is 22 characters; anything shorter cannot hold them.
MIN_JTI_CHARS = 22
MAX_JTI_CHARS = 128
