"""Build a core from YAML text and drive it with a manual clock."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from passbridge.clock import ManualClock
from passbridge.core.decision import Decision, Presentation
from passbridge.core.engine import DoorCore
from passbridge.core.model import Factor, Side, Site, TrustedKey
from passbridge.core.tokens import (
    TOKEN_FACTORS,
    FactorTokenMinter,
    FactorTokenVerifier,
    generate_private_key,
    public_key_to_pem,
)
from passbridge.site_file import parse_site

PIN_KEY = b"k" * 32
LA = ZoneInfo("America/Los_Angeles")


def site_from_yaml(text: str) -> Site:
    return parse_site(yaml.safe_load(text), file="test.yaml", pin_key=PIN_KEY)


class Harness:
    """A DoorCore with a bridge key, a manual clock and short helpers."""

    def __init__(self, text: str, start: datetime) -> None:
        self.site = site_from_yaml(text)
        self.clock = ManualClock(start.replace(tzinfo=LA) if start.tzinfo is None else start)
        key = self.bridge_key = generate_private_key("ES256")
        # Like the in-process bridge's key: every door, every factor.
        trusted = TrustedKey(
            "bridge-test", "ES256", public_key_to_pem(key), factors=TOKEN_FACTORS
        )
        self.verifier = FactorTokenVerifier(self.site.id, [trusted], clock=self.clock)
        self.minter = FactorTokenMinter(
            "bridge-test", key, site_id=self.site.id, clock=self.clock, kid="bridge-test"
        )
        self.core = DoorCore(self.site, pin_key=PIN_KEY, tokens=self.verifier)

    def card(self, door: str, number: str, side: Side = Side.IN) -> Decision:
        return self.core.decide(
            Presentation(Factor.CARD, door, side, credential=number), self.clock.moment()
        )

    def pin(self, door: str, code: str, side: Side = Side.IN) -> Decision:
        return self.core.decide(
            Presentation(Factor.PIN, door, side, secret=code), self.clock.moment()
        )

    def mobile(
        self,
        factor: Factor,
        door: str,
        user: str,
        credential: str,
        side: Side = Side.IN,
        evidence: dict[str, Any] | None = None,
    ) -> Decision:
        token = self.minter.mint(
            user=user,
            door=door,
            side=side,
            factor=factor,
            credential=credential,
            evidence=evidence or {},
        )
        return self.core.decide_token(token, self.clock.moment())

    def after(self, seconds: float) -> Harness:
        self.clock.advance(seconds)
        return self
