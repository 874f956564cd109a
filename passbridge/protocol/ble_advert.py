"""The passbridge BLE advertisement: service UUID and rotating identifier.

A phone advertises so that a bridge can (a) find it for a Bluetooth unlock and
(b) vouch that it was near a door for a Nearby unlock. Neither needs to know
WHO the phone is from the advertisement, and a stable identifier on the air
would let anyone with a scanner track the phone's owner. So the advertisement
carries only the passbridge service UUID (the same for every phone) and a
rotating identifier that looks random to everyone but the site.

The identifier is *resolvable*, like a Bluetooth resolvable private address:
``rotating_id(proximity_key, slot)`` is a truncated HMAC-SHA256 under a
per-credential proximity key over the number of the current time slot
(``SLOT_SECONDS``). The proximity key is agreed at enrolment without sending
a new secret anywhere: both ends run ECDH between the phone's credential key
and the site's reader key and put the result through HKDF
(``derive_proximity_key``). So the bridge can tell which enrolled credential
advertised an id (and that a nearby request names the requester's own id),
while anyone without the key sees unlinkable random-looking 8-byte values.

The 31-byte budget of a legacy advertisement does not fit a 128-bit UUID list
(18 bytes) and 128-bit service data (18 + payload) together with the flags,
so, as Android and iOS apps do, the UUID list goes in the advertisement and
the service data in the scan response; scanners (bleak on every platform)
merge the two into one view.

Service data for the service UUID::

    version(1) = 0x01 | rotating_id(8)

Sans-I/O: builders return the raw AD structures; parsers take bleak's merged
``service_data`` mapping or raw AD bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import uuid
from collections.abc import Callable, Iterator, Mapping

from cryptography.hazmat.primitives.asymmetric import ec

from passbridge.errors import PassbridgeError
from passbridge.protocol.aliro_crypto import ecdh_shared_x, hkdf_sha256
from passbridge.protocol.ble_framing import SERVICE_UUID

__all__ = [
    "ADV_ID_LENGTH",
    "LAYOUT_VERSION",
    "PROXIMITY_KEY_INFO",
    "PROXIMITY_KEY_LENGTH",
    "ROTATING_ID_LABEL",
    "SLOT_SECONDS",
    "SLOT_TOLERANCE",
    "SERVICE_UUID",
    "AdvertError",
    "advertising_data",
    "adv_id_from_payload",
    "derive_proximity_key",
    "rotating_id",
    "slot_at",
    "adv_id_from_service_data",
    "format_adv_id",
    "iter_ad_structures",
    "new_adv_id",
    "parse_adv_id",
    "parse_service_data",
    "scan_response_data",
    "service_data",
]

ADV_ID_LENGTH = 8
LAYOUT_VERSION = 0x01
#: Legacy advertising PDU payload limit, for the advertisement and the scan response each.
LEGACY_AD_MAX = 31

AD_FLAGS = 0x01
AD_COMPLETE_128_BIT_UUIDS = 0x07
AD_SERVICE_DATA_128_BIT = 0x21
#: LE General Discoverable, BR/EDR not supported.
FLAGS_VALUE = 0x06

_SERVICE_UUID_LE = uuid.UUID(SERVICE_UUID).bytes[::-1]


class AdvertError(PassbridgeError, ValueError):
    """Advertisement bytes that are not a passbridge advertisement."""


#: Length of a time slot: a phone advertises one id per slot. Five minutes
#: is shorter than the ~15 min address rotation of Android and iOS (so the id
#: never outlives the address and links two of them) and bounds how long a
#: recorded id stays resolvable: the bridge accepts the slot before and after
#: its own (clock skew), so at most three slots, 15 minutes in all.
SLOT_SECONDS = 300
#: Slots either side of the bridge's current slot that still resolve.
SLOT_TOLERANCE = 1
PROXIMITY_KEY_LENGTH = 32
#: HKDF info for the proximity key and the HMAC label of a rotating id:
#: domain separation from every other use of the same keys.
PROXIMITY_KEY_INFO = b"passbridge ble proximity key v1"
ROTATING_ID_LABEL = b"passbridge ble rotating id v1"


def derive_proximity_key(
    private_key: ec.EllipticCurvePrivateKey, peer_public_point: bytes
) -> bytes:
    """The per-credential proximity key, computed the same at both ends.

    The phone calls it with its credential private key and the site's reader
    public key; the site with the reader private key and the phone's
    enrolled public key: ``HKDF-SHA256(ikm = x-coordinate of the ECDH shared
    point, salt = none, info = PROXIMITY_KEY_INFO, L = 32)``. Static-static
    ECDH of these two keys is used for nothing else (the Aliro flow uses
    ephemeral keys), and the info string separates it even so.
    """
    return hkdf_sha256(
        ecdh_shared_x(private_key, bytes(peer_public_point)), None, PROXIMITY_KEY_INFO,
        PROXIMITY_KEY_LENGTH,
    )


def slot_at(unix_seconds: float, slot_seconds: int = SLOT_SECONDS) -> int:
    """The time slot an instant falls in: ``floor(unix_seconds / slot_seconds)``."""
    if unix_seconds < 0:
        raise ValueError("time before 1970 has no slot")
    return math.floor(unix_seconds / slot_seconds)


def rotating_id(proximity_key: bytes, slot: int) -> bytes:
    """The id a phone advertises during ``slot``.

    ``HMAC-SHA256(proximity_key, ROTATING_ID_LABEL || uint64_be(slot))``,
    first 8 bytes. HMAC rather than AES (as Bluetooth's own ``ah`` uses):
    every phone platform has it (CryptoKit ``HMAC<SHA256>``, ``javax.crypto.Mac``)
    with no mode or padding to choose, and it is a PRF for any input, so
    without the key the ids of one phone look unrelated to each other.
    """
    if len(proximity_key) != PROXIMITY_KEY_LENGTH:
        raise AdvertError(f"proximity key must be {PROXIMITY_KEY_LENGTH} bytes")
    if not 0 <= slot < 2**64:
        raise AdvertError("slot out of range")
    mac = hmac.new(proximity_key, ROTATING_ID_LABEL + slot.to_bytes(8, "big"), hashlib.sha256)
    return mac.digest()[:ADV_ID_LENGTH]


def new_adv_id(randbytes: Callable[[int], bytes] = secrets.token_bytes) -> bytes:
    """A random 8-byte id: what a phone unknown to the site (or a test
    advertiser) puts on the air. Enrolled phones advertise ``rotating_id``."""
    adv_id = randbytes(ADV_ID_LENGTH)
    _check_adv_id(adv_id)
    return adv_id


def _check_adv_id(adv_id: bytes) -> None:
    if len(adv_id) != ADV_ID_LENGTH:
        raise AdvertError(f"rotating id must be {ADV_ID_LENGTH} bytes, got {len(adv_id)}")


def format_adv_id(adv_id: bytes) -> str:
    """The text form used in the nearby request's ``adv`` claim: lowercase hex."""
    _check_adv_id(adv_id)
    return adv_id.hex()


def parse_adv_id(text: str) -> bytes:
    if len(text) != 2 * ADV_ID_LENGTH or text.lower() != text:
        raise AdvertError(f"rotating id must be {2 * ADV_ID_LENGTH} lowercase hex digits")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise AdvertError("rotating id must be lowercase hex") from None


def service_data(adv_id: bytes) -> bytes:
    """The service data value (without the UUID) for the passbridge service."""
    _check_adv_id(adv_id)
    return bytes((LAYOUT_VERSION,)) + adv_id


def parse_service_data(data: bytes) -> bytes:
    """The rotating id from a service data value; strict about the layout."""
    if len(data) != 1 + ADV_ID_LENGTH:
        raise AdvertError(f"service data must be {1 + ADV_ID_LENGTH} bytes, got {len(data)}")
    if data[0] != LAYOUT_VERSION:
        raise AdvertError(f"unknown service data layout version 0x{data[0]:02x}")
    return bytes(data[1:])


def adv_id_from_service_data(service_data_by_uuid: Mapping[str, bytes]) -> bytes:
    """The rotating id from bleak's ``AdvertisementData.service_data``."""
    data = service_data_by_uuid.get(SERVICE_UUID)
    if data is None:
        raise AdvertError("no passbridge service data in the advertisement")
    return parse_service_data(bytes(data))


def _ad(ad_type: int, value: bytes) -> bytes:
    return bytes((len(value) + 1, ad_type)) + value


def advertising_data() -> bytes:
    """The advertisement (ADV_IND) payload: flags and the service UUID.

    Identical for every phone, so it says nothing about which phone it is.
    """
    return _ad(AD_FLAGS, bytes((FLAGS_VALUE,))) + _ad(AD_COMPLETE_128_BIT_UUIDS, _SERVICE_UUID_LE)


def scan_response_data(adv_id: bytes) -> bytes:
    """The scan response payload: 128-bit service data with the rotating id."""
    return _ad(AD_SERVICE_DATA_128_BIT, _SERVICE_UUID_LE + service_data(adv_id))


def iter_ad_structures(payload: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, value) pairs of an advertising payload; strict about lengths."""
    offset = 0
    while offset < len(payload):
        length = payload[offset]
        if length == 0:  # early terminator: the rest is padding
            return
        end = offset + 1 + length
        if end > len(payload):
            raise AdvertError("AD structure runs past the end of the payload")
        yield payload[offset + 1], bytes(payload[offset + 2 : end])
        offset = end


def adv_id_from_payload(payload: bytes) -> bytes:
    """The rotating id from raw AD bytes (scan response, or a merged payload)."""
    for ad_type, value in iter_ad_structures(payload):
        if ad_type == AD_SERVICE_DATA_128_BIT and value[:16] == _SERVICE_UUID_LE:
            return parse_service_data(value[16:])
    raise AdvertError("no passbridge service data in the payload")
