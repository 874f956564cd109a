"""The compact JWS serialisation: base64url segments and their JSON, both ways.

A token is parsed here, once, with PyJWT's strictness (URL-safe alphabet
only, canonical base64, padding only where PyJWT allows it), because
``jwt.decode`` would parse it a second time character by character and that
costs more than the signature check itself on a busy door.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from json.scanner import make_scanner
from typing import Any

# base64url to standard base64 for binascii's strict decoder; "+" and "/" are
# not base64url, so they become "!", which the strict decoder refuses.
_TO_STANDARD_B64 = bytes.maketrans(b"-_+/", b"+/!!")
# Bits of a segment's last character that carry no data, by its length mod 4.
# They must be zero: otherwise two spellings decode to the same bytes (PyJWT
# refuses those too, by re-encoding).
_SPARE_BITS = (0, 0, 0b1111, 0b11)
_B64URL_VALUE = [0] * 256
for _i, _c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"):
    _B64URL_VALUE[_c] = _i
# Parsed headers by their exact segment: one bridge signs every token with the
# same header, so after the first token it costs a dict lookup. Bounded; a
# flood of distinct headers only empties it.
_HEADER_CACHE: dict[bytes, dict[str, Any]] = {}
_HEADER_CACHE_MAX = 256
# The C scanner behind json.loads, called directly: json.loads and
# JSONDecoder.raw_decode add Python-level frames and a whitespace regex.
_SCAN_JSON: Callable[[str, int], tuple[Any, int]] = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
# "=" padding that completes the last quad, by the unpadded length mod 4
# (None: a lone character, which no encoding produces).
_PADDING = (b"", None, b"==", b"=")


class _NotCanonical(ValueError):
    """A segment that PyJWT's strict base64url decoding would refuse."""


def _unb64(segment: bytes) -> bytes:
    """Decode one base64url segment exactly as strictly as PyJWT does.

    Only the URL-safe alphabet; "=" padding only to complete the last quad
    (at most two); no length that leaves a lone character; unused bits zero.
    """
    if segment and segment[-1] != 61:  # no "=": what JWS producers send
        quad_rem = len(segment) & 3
        pad = _PADDING[quad_rem]
        if pad is None or _B64URL_VALUE[segment[-1]] & _SPARE_BITS[quad_rem]:
            raise _NotCanonical
        try:
            return binascii.a2b_base64(
                segment.translate(_TO_STANDARD_B64) + pad, strict_mode=True
            )
        except binascii.Error as exc:
            raise _NotCanonical from exc
    body = segment.rstrip(b"=")
    padding = len(segment) - len(body)
    rem = len(body) % 4
    if rem == 1 or padding > 2 or (padding and len(segment) % 4):
        raise _NotCanonical
    if body and _B64URL_VALUE[body[-1]] & _SPARE_BITS[rem]:
        raise _NotCanonical
    try:
        return binascii.a2b_base64(
            body.translate(_TO_STANDARD_B64) + b"=" * (-rem % 4), strict_mode=True
        )
    except binascii.Error as exc:
        raise _NotCanonical from exc


def _json(data: bytes) -> Any:
    """``json.loads`` of a segment, by the quicker route when the text is plain UTF-8."""
    try:
        text = data.decode("utf-8")
        value, end = _SCAN_JSON(text, 0)
        if end == len(text):
            return value
    except (ValueError, StopIteration):  # not UTF-8, not JSON, or not from index 0
        pass
    # Surrounding whitespace, a BOM, UTF-16/32, or not JSON at all: the
    # standard route decides (and raises for the last).
    return json.loads(data)


def _header(segment: bytes) -> Any:
    header = _HEADER_CACHE.get(segment)
    if header is not None:
        return header
    parsed = _json(_unb64(segment))
    if isinstance(parsed, dict):
        if len(_HEADER_CACHE) >= _HEADER_CACHE_MAX:
            _HEADER_CACHE.clear()
        _HEADER_CACHE[segment] = parsed
    return parsed


_B64_URLSAFE = bytes.maketrans(b"+/", b"-_")
# json.dumps(..., separators=(",", ":")) makes a new encoder on every call;
# this is the very same encoder, made once.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode


def _b64url(data: bytes) -> bytes:
    """Unpadded base64url, the same bytes as PyJWT's ``base64url_encode``."""
    return binascii.b2a_base64(data, newline=False).translate(_B64_URLSAFE).rstrip(b"=")
