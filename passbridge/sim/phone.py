"""A simulated Pass app phone: its credential key and what the app signs.

The phone's radio behaviour lives in sim.nfc_card (NFC) and sim.ble_phone
(BLE); this is the part both share: the credential key pair and the
applet that runs the phone role of the authentication.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from passbridge.core.tokens import new_jti
from passbridge.p256 import public_key_bytes
from passbridge.protocol.aliro_crypto import Interface
from passbridge.protocol.aliro_phone import PhoneApplet, PhoneMisbehaviour
from passbridge.protocol.ble_advert import derive_proximity_key, rotating_id, slot_at

NEARBY_REQUEST_LIFETIME = 30


@dataclass
class SimulatedPhone:
    phone_id: str
    credential_key: ec.EllipticCurvePrivateKey = field(repr=False)
    # FAST keys the phone has kept, per reader group (the app's secure storage).
    kpersistent: dict[bytes, bytes] = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls, phone_id: str) -> SimulatedPhone:
        return cls(phone_id, ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_key_point(self) -> bytes:
        return public_key_bytes(self.credential_key)

    def applet(
        self,
        reader_public_key: bytes,
        *,
        interface: Interface = Interface.NFC,
        misbehaviour: PhoneMisbehaviour | None = None,
    ) -> PhoneApplet:
        """A fresh applet session; FAST keys persist across taps of this phone."""
        return PhoneApplet(
            self.credential_key,
            reader_public_key,
            interface=interface,
            kpersistent_store=self.kpersistent,
            misbehaviour=misbehaviour,
        )

    def proximity_key(self, reader_public_key: bytes) -> bytes:
        """The proximity key, agreed at enrolment with no secret sent: ECDH of
        this phone's credential key with the site's reader key, then HKDF."""
        return derive_proximity_key(self.credential_key, reader_public_key)

    def adv_id_at(self, reader_public_key: bytes, unix_seconds: float) -> bytes:
        """The rotating id this phone advertises at that instant (protocols/ble)."""
        return rotating_id(self.proximity_key(reader_public_key), slot_at(unix_seconds))

    def nearby_request(
        self, door: str, adv_id: str, *, issued_at: float | None = None, side: str | None = None,
        kid: str | None = None,
    ) -> str:
        """The JWS the app sends for a Nearby unlock, signed by the credential key.

        The app sends no ``side`` (the bridge takes it from the radio that
        heard the phone); ``side`` and ``kid`` exist to test the service
        against requests that claim one or name another key."""
        iat = int(time.time() if issued_at is None else issued_at)
        claims: dict[str, object] = {
            "cred": self.phone_id,
            "door": door,
            "adv": adv_id,
            "iat": iat,
            "exp": iat + NEARBY_REQUEST_LIFETIME,
            "jti": new_jti(),
        }
        if side is not None:
            claims["side"] = side
        return jwt.encode(
            claims, self.credential_key, algorithm="ES256",
            headers={"kid": self.phone_id if kid is None else kid},
        )
