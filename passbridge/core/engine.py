"""The door decision core: one function of (site, runtime state, factor, moment).

The order of checks is the contract's and is written down in
docs/decisions.md: device, door state (lockdown, locked, unlocked),
credential, access, path evidence, then the two-factor rules. Nothing here
does I/O; the caller records each decision in the audit log before it
answers anyone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from passbridge.clock import Moment
from passbridge.core.credentials import mask_card
from passbridge.core.decision import (
    Decision,
    Presentation,
    ResolvedState,
    build_decision,
    new_decision_id,
)
from passbridge.core.model import (
    CARD_EQUIVALENT,
    MOBILE_FACTORS,
    REASON_RESULT,
    Door,
    DoorState,
    Factor,
    Reason,
    Result,
    Side,
    Site,
    User,
)
from passbridge.core.pin import pin_hash, pin_matches
from passbridge.core.schedule import (
    Override,
    minute_is_uniform,
    override_minutes_problem,
    resolve_state,
)
from passbridge.core.tokens import FactorTokenVerifier, TokenRejection, UnverifiedToken
from passbridge.core.two_factor import PendingCard, TwoFactorMemory
from passbridge.errors import ConfigError, Problem, UnknownDoor

log = logging.getLogger(__name__)

# Nearby evidence: the phone's rotating id seen at least this strong, this recently.
NEARBY_RSSI_MIN = -80
NEARBY_MAX_AGE_SECONDS = 10.0
_LOCKDOWN = ResolvedState(DoorState.LOCKED, "lockdown")
# Enum members the decision path tests on every call, as module constants:
# on Python 3.11 reading ``Factor.CARD`` costs ten times a global lookup.
_IN = Side.IN
_CARD, _PIN, _BLE, _NEARBY, _REMOTE = (
    Factor.CARD, Factor.PIN, Factor.BLE, Factor.NEARBY, Factor.REMOTE
)
_LOCKED, _UNLOCKED, _TWO_FACTOR = DoorState.LOCKED, DoorState.UNLOCKED, DoorState.TWO_FACTOR
_GRANTED = Result.GRANTED
_ACCESS_GRANTED = Reason.ACCESS_GRANTED
_NFC = Factor.NFC
# The NFC flow a tap used (the bridge's ``ev.flow``), as the decision's detail shows it.
_NFC_FLOW_DETAIL = {"STANDARD": "NFC STANDARD tap", "FAST": "NFC FAST tap"}
# Factors whose credential a decision shows unchanged (a card is masked, a PIN hidden).
_SHOWN_AS_IS = frozenset(Factor) - {Factor.CARD, Factor.PIN}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MINUTE = timedelta(minutes=1)


@dataclass(slots=True)
class _Context:
    """What every decision about one presentation shares.

    Internal and never mutated after it is made; not frozen because a frozen
    dataclass costs several times as much to build, once per decision.
    """

    door: Door
    side: Side
    factor: Factor
    resolved: ResolvedState
    moment: Moment

    @property
    def entering_two_factor(self) -> bool:
        """Two-factor applies only on the way in (In/Out doors leave on one factor)."""
        return self.resolved.state is DoorState.TWO_FACTOR and self.side is Side.IN


class DoorCore:
    """Decides; keeps the little runtime state decisions depend on.

    Thread-safe: the NFC reader thread and the event loop may both ask.
    """

    def __init__(
        self, site: Site, *, pin_key: bytes, tokens: FactorTokenVerifier | None = None
    ) -> None:
        self._site = site
        self._pin_key = pin_key
        self._tokens = tokens
        self._memory = TwoFactorMemory()
        self._overrides: dict[str, Override] = {}
        self._site_lockdown = False
        self._door_lockdowns: set[str] = set()
        # door id -> (UTC minute, door, zone, state): see _scheduled.
        self._schedule_cache: dict[str, tuple[int, Door, ZoneInfo, ResolvedState]] = {}
        self._lock = threading.RLock()

    # --- configuration ---------------------------------------------------
    @property
    def site(self) -> Site:
        return self._site

    def replace_site(self, site: Site) -> None:
        """Apply a new, already validated configuration.

        Pending cards and overrides of doors that no longer exist go; an
        override that the new door cannot hold (two-factor without a
        keypad) goes too, rather than make the configuration invalid.
        """
        with self._lock:
            for door_id in list(self._overrides):
                door = site.doors.get(door_id)
                override = self._overrides[door_id]
                if door is None or (
                    override.state is DoorState.TWO_FACTOR and not door.supports_two_factor
                ):
                    del self._overrides[door_id]
            for door_id in list(self._door_lockdowns):
                if door_id not in site.doors:
                    self._door_lockdowns.discard(door_id)
            for door_id in self._site.doors:
                if door_id not in site.doors:
                    self._memory.forget_door(door_id)
                    self._memory.forget_keypads(door_id)
            self._schedule_cache.clear()
            self._site = site

    def door(self, door_id: str) -> Door:
        door = self._site.doors.get(door_id)
        if door is None:
            raise UnknownDoor(door_id)
        return door

    # --- door state ------------------------------------------------------
    def door_state(self, door_id: str, moment: Moment) -> ResolvedState:
        with self._lock:
            return self._resolve(self.door(door_id), moment)

    def _resolve(self, door: Door, moment: Moment) -> ResolvedState:
        override = self._overrides.get(door.id) if self._overrides else None
        if override is not None and moment.elapsed >= override.ends_elapsed:
            del self._overrides[door.id]
            override = None
        # The first two rules of resolve_state, here so that only the
        # schedule's answer needs caching.
        if self._site_lockdown or door.id in self._door_lockdowns:
            return _LOCKDOWN
        if override is not None:
            return ResolvedState(override.state, "override")
        # The schedule and exceptions, resolved once per minute: they only
        # look at the site-local date and minute, so the answer for one UTC
        # minute holds for all of it where that minute is one local minute
        # (minute_is_uniform checks that before an answer is kept). One entry
        # per door; a new site (new Door objects, maybe a new zone) never
        # matches an old entry.
        at = moment.utc
        tz = self._site.timezone
        if at.tzinfo is not UTC and (at.tzinfo is None or at.utcoffset() is None):
            # resolve_state refuses naive instants: let it say so.
            return resolve_state(door, tz, at, lockdown=False, override=None)
        minute = (at - _EPOCH) // _ONE_MINUTE  # exactly schedule.utc_minute(at)
        cached = self._schedule_cache.get(door.id)
        if cached is not None and cached[0] == minute and cached[1] is door and cached[2] is tz:
            return cached[3]
        resolved = resolve_state(door, tz, at, lockdown=False, override=None)
        if minute_is_uniform(minute, tz):
            self._schedule_cache[door.id] = (minute, door, tz, resolved)
        return resolved

    def override(self, door_id: str) -> Override | None:
        with self._lock:
            return self._overrides.get(door_id)

    def set_override(
        self, door_id: str, state: DoorState | None, minutes: int | None, moment: Moment
    ) -> ResolvedState:
        """A timed manual state for a door (admin API, scenario ``configure``)."""
        with self._lock:
            door = self.door(door_id)
            if state is None:
                self._overrides.pop(door_id, None)
                return self._resolve(door, moment)
            place = f"doors/{door_id}/override"
            if state is DoorState.TWO_FACTOR and not door.supports_two_factor:
                lacks = "a keypad" if door.reader else "a badge reader"
                if not door.reader and not door.keypad:
                    lacks = "a badge reader and a keypad"
                raise ConfigError(
                    [
                        Problem(
                            "override",
                            place,
                            f"door {door_id!r}: two_factor needs both a badge reader and a "
                            f"keypad; this door has no {lacks.removeprefix('a ')}",
                        )
                    ]
                )
            problem = override_minutes_problem(minutes)
            if problem is not None or minutes is None:
                raise ConfigError(
                    [Problem("override", f"{place}.minutes", problem or "minutes missing")]
                )
            seconds = minutes * 60.0
            self._overrides[door_id] = Override(
                state=state,
                ends_elapsed=moment.elapsed + seconds,
                ends_at=moment.utc + timedelta(seconds=seconds),
            )
            if state is not DoorState.TWO_FACTOR:
                self._memory.forget_door(door_id)
            return self._resolve(door, moment)

    def set_lockdown(self, active: bool, door_id: str | None = None) -> None:
        with self._lock:
            if door_id is None:
                self._site_lockdown = active
                return
            self.door(door_id)
            if active:
                self._door_lockdowns.add(door_id)
            else:
                self._door_lockdowns.discard(door_id)

    def lockdown(self) -> tuple[bool, frozenset[str]]:
        with self._lock:
            return self._site_lockdown, frozenset(self._door_lockdowns)

    # --- decisions -------------------------------------------------------
    def decide(self, presentation: Presentation, moment: Moment) -> Decision:
        """A wired factor (card or PIN). Mobile factors come only as tokens."""
        p = presentation
        if p.factor in MOBILE_FACTORS:
            raise ValueError(f"{p.factor} factors reach the core only as tokens")
        return self._guarded(
            self.door(p.door),  # UnknownDoor is the caller's 404
            p.factor, p.side, p.user, p.credential, p.secret, p.evidence, moment,
        )

    def decide_token(
        self,
        token: str,
        moment: Moment,
        *,
        door_hint: str | None = None,
        decide_unverified: bool = True,
    ) -> Decision:
        """A signed factor token from a trusted bridge.

        ``door_hint`` is the door the request was addressed to (a URL path);
        a token for another door is invalid there. ``decide_unverified``
        False: a token whose signature does not verify against a trusted key
        raises UnverifiedToken instead of becoming a denial (input from
        outside the process, which nobody can be held to; see
        docs/decisions.md). A verified token that fails a later check is a
        denial either way.
        """
        if self._tokens is None:
            if not decide_unverified:
                raise UnverifiedToken(
                    TokenRejection(Reason.TOKEN_INVALID, "no bridge keys are trusted"))
            return self._reject_token(
                Reason.TOKEN_INVALID, "no bridge keys are trusted", door_hint, moment
            )
        try:
            # The verified claims as a plain tuple: no intermediate objects on
            # the hot path (see FactorTokenVerifier.verify_fields).
            checked = self._tokens.verify_fields(token)
        except Exception:  # noqa: BLE001 - fail secure on any verifier fault
            log.exception("token verifier failed")
            return self._reject_token(Reason.INTERNAL_ERROR, "verifier error", door_hint, moment)
        if isinstance(checked, TokenRejection):
            if not (checked.verified or decide_unverified):
                raise UnverifiedToken(checked)
            return self._reject_token(checked.reason, checked.detail, door_hint, moment)
        # The evidence dict was parsed from this very token: no one else holds it.
        user, door_id, side, factor, credential, evidence, _jti = checked
        if door_hint is not None and door_id != door_hint:
            return self._reject_token(
                Reason.TOKEN_INVALID, "token is for another door", door_hint, moment
            )
        door = self._site.doors.get(door_id)
        if door is None:
            raise UnknownDoor(door_id)
        # _guarded, inlined on this hot path.
        with self._lock:
            try:
                decision = self._decide(
                    door, factor, side, user, credential, None, evidence, moment
                )
            except Exception:  # noqa: BLE001
                return self._internal_error(door, side, factor, moment)
        if factor is _NFC:
            return _with_nfc_flow(decision, evidence.get("flow"))
        return decision

    def deny_unauthenticated(
        self,
        door_id: str,
        side: Side,
        factor: Factor,
        reason: Reason,
        detail: str,
        moment: Moment,
        *,
        credential: str | None = None,
    ) -> Decision:
        """A factor that failed before it could become a token (e.g. an NFC
        tap by an unknown or revoked phone): denied and audited all the same."""
        if reason.result.value != "denied":
            raise ValueError("deny_unauthenticated only denies")
        with self._lock:
            door = self.door(door_id)
            if factor in CARD_EQUIVALENT:
                # A tap that failed authentication was still a card at the
                # reader: it ends the pending card like any other card step.
                self._memory.clear(door.id, side)
            resolved = self._safe_resolve(door, moment)
            return self._decision(
                _Context(door, side, factor, resolved, moment),
                reason,
                credential=credential,
                detail=detail,
            )

    def _reject_token(
        self, reason: Reason, detail: str, door_hint: str | None, moment: Moment
    ) -> Decision:
        resolved: ResolvedState | None = None
        door = self._site.doors.get(door_hint) if door_hint else None
        if door is not None:
            resolved = self._safe_resolve(door, moment)
        return Decision(
            id=new_decision_id(),
            result=reason.result,
            reason=reason,
            door=door_hint or "",
            side=Side.IN,
            factor=None,
            user=None,
            credential=None,
            state=resolved.state if resolved else None,
            state_source=resolved.source if resolved else None,
            revision=self._site.revision,
            at=moment.utc,
            detail=detail,
        )

    def _safe_resolve(self, door: Door, moment: Moment) -> ResolvedState:
        try:
            return self._resolve(door, moment)
        except Exception:  # noqa: BLE001 - a denial must still be recordable
            log.exception("state resolution failed for door %s", door.id)
            return ResolvedState(DoorState.LOCKED, "internal_error")

    def _guarded(
        self,
        door: Door,
        factor: Factor,
        side: Side,
        user_id: str | None,
        credential: str | None,
        secret: str | None,
        evidence: Mapping[str, Any],
        moment: Moment,
    ) -> Decision:
        """Any fault inside a decision denies: a door never opens by accident.

        The presentation arrives as its parts (see ``Presentation`` for their
        meaning) so that a token never needs an intermediate object.
        """
        with self._lock:
            try:
                return self._decide(
                    door, factor, side, user_id, credential, secret, evidence, moment
                )
            except Exception:  # noqa: BLE001
                return self._internal_error(door, side, factor, moment)

    def _internal_error(self, door: Door, side: Side, factor: Factor, moment: Moment) -> Decision:
        """The denial for a fault inside a decision (called from its except block)."""
        log.exception("decision failed (door %s, factor %s)", door.id, factor)
        return Decision(
            id=new_decision_id(),
            result=Reason.INTERNAL_ERROR.result,
            reason=Reason.INTERNAL_ERROR,
            door=door.id,
            side=side,
            factor=factor,
            user=None,
            credential=None,
            state=None,
            state_source=None,
            revision=self._site.revision,
            at=moment.utc,
            detail="internal error; see the service log",
        )

    def _decide(
        self,
        door: Door,
        factor: Factor,
        side: Side,
        user_id: str | None,
        credential: str | None,
        secret: str | None,
        evidence: Mapping[str, Any],
        moment: Moment,
    ) -> Decision:
        # 1. The device must exist on this door and side. (Only an exit side,
        # a PIN or a door without a reader can lack one: skip the call otherwise.)
        missing = (
            self._missing_device(door, side, factor)
            if side is not _IN or factor is _PIN or not door.reader
            else None
        )
        resolved = self._resolve(door, moment)
        ctx = _Context(door, side, factor, resolved, moment)
        shown_credential = (
            credential if factor in _SHOWN_AS_IS else self._shown_credential(factor, credential)
        )
        if missing:
            return self._decision(
                ctx, Reason.NO_SUCH_DEVICE, credential=shown_credential, detail=missing
            )

        # A card or NFC step ends the card pending at this door side whatever
        # its own result (rules.md "Exact readings": a new card at the reader
        # means a new person at the door); a pending step of its own may follow.
        if factor in CARD_EQUIVALENT:
            self._memory.clear(door.id, side)

        user = self._identify(factor, user_id, credential)

        # 2. Lockdown and locked doors deny everyone but a site admin's remote unlock.
        if resolved.state is _LOCKED:
            reason = Reason.LOCKDOWN if resolved.source == "lockdown" else Reason.DOOR_LOCKED
            if (
                factor is _REMOTE
                and user is not None
                and user.is_site_admin
                and user.may_open(door.id)
            ):
                return self._decision(
                    ctx,
                    _ACCESS_GRANTED,
                    user=user,
                    credential=shown_credential,
                    detail=f"site admin remote unlock during {reason.value}",
                )
            return self._decision(ctx, reason, user=user, credential=shown_credential)

        # 3. An unlocked door needs nothing; the presentation is logged.
        if resolved.state is _UNLOCKED:
            return self._decision(ctx, Reason.DOOR_UNLOCKED, user=user, credential=shown_credential)

        if factor is _PIN:
            return self._decide_pin(ctx, secret or "")

        # 4. Who is it, and may they open this door?
        if user is None:
            return self._decision(ctx, Reason.UNKNOWN_CREDENTIAL, credential=shown_credential)
        if not user.may_open(door.id):
            detail = "user disabled" if not user.enabled else "door not in the user's access"
            return self._decision(
                ctx, Reason.NO_ACCESS, user=user, credential=shown_credential, detail=detail
            )

        # 5. Path evidence and path permissions.
        if factor is _REMOTE and not (user.remote_unlock or user.is_site_admin):
            return self._decision(
                ctx, Reason.REMOTE_NOT_PERMITTED, user=user, credential=shown_credential
            )
        if factor is _NEARBY and not _nearby_evidence_ok(evidence):
            return self._decision(
                ctx,
                Reason.NOT_NEARBY,
                user=user,
                credential=shown_credential,
                detail=_describe_evidence(evidence),
            )
        entering_two_factor = resolved.state is _TWO_FACTOR and side is _IN
        if factor is _BLE:
            if entering_two_factor:
                return self._decision(
                    ctx, Reason.BLE_NOT_ALLOWED, user=user, credential=shown_credential
                )
            rssi = evidence.get("rssi")
            if not isinstance(rssi, int) or isinstance(rssi, bool) or rssi < door.ble_rssi_min:
                return self._decision(
                    ctx,
                    Reason.TOO_FAR,
                    user=user,
                    credential=shown_credential,
                    detail=f"rssi {rssi} below the door's {door.ble_rssi_min} dBm",
                )

        if not entering_two_factor:
            return self._decision(
                ctx, _ACCESS_GRANTED, user=user, credential=shown_credential
            )

        # 6. Two-factor entry.
        if factor in CARD_EQUIVALENT:
            return self._card_step(ctx, user, shown_credential)
        if door.strict_two_factor:
            return self._decision(
                ctx, Reason.BYPASS_DISABLED, user=user, credential=shown_credential
            )
        if not _profile_complete(user):
            return self._decision(
                ctx, Reason.PROFILE_INCOMPLETE, user=user, credential=shown_credential
            )
        bypass = Reason.BYPASS_NEARBY if factor is _NEARBY else Reason.BYPASS_REMOTE
        return self._decision(ctx, bypass, user=user, credential=shown_credential)

    def _card_step(self, ctx: _Context, user: User, credential: str | None) -> Decision:
        # _decide has already ended the card that was waiting here.
        if not _profile_complete(user):
            return self._decision(ctx, Reason.PROFILE_INCOMPLETE, user=user, credential=credential)
        now = ctx.moment.elapsed
        if self._memory.locked_out(user.id, ctx.door.id, now):
            remaining = self._memory.lockout_remaining(user.id, ctx.door.id, now)
            return self._decision(
                ctx,
                Reason.LOCKED_OUT,
                user=user,
                credential=credential,
                detail=f"{remaining:.0f} s of lockout left",
            )
        self._memory.start(ctx.door.id, ctx.side, PendingCard(user.id, credential, ctx.factor, now))
        return self._decision(ctx, Reason.PIN_REQUIRED, user=user, credential=credential)

    def _decide_pin(self, ctx: _Context, code: str) -> Decision:
        door, now = ctx.door, ctx.moment.elapsed
        if not ctx.entering_two_factor:
            return self._pin_alone(ctx, code)
        pending = self._memory.pending(door.id, ctx.side)
        user = self._site.users.get(pending.user) if pending else None
        if pending is None or user is None:
            return self._decision(ctx, Reason.PIN_WITHOUT_CARD)
        if pending.expired(now, door.pin_timeout):
            self._memory.clear(door.id, ctx.side)
            return self._decision(ctx, Reason.PIN_TIMEOUT, user=user, credential=pending.credential)
        if pin_matches(self._pin_key, code, user.pin_hash):
            self._memory.clear(door.id, ctx.side)
            self._memory.entered(user.id, door.id)
            return self._decision(
                ctx, Reason.TWO_FACTOR_COMPLETE, user=user, credential=pending.credential
            )
        if self._memory.wrong_pin(user.id, door.id, now):
            self._memory.clear(door.id, ctx.side)
            return self._decision(
                ctx,
                Reason.PIN_INCORRECT,
                user=user,
                credential=pending.credential,
                detail="too many wrong codes: locked out of two-factor entry here",
            )
        return self._decision(ctx, Reason.PIN_INCORRECT, user=user, credential=pending.credential)

    def _pin_alone(self, ctx: _Context, code: str) -> Decision:
        """PIN-only entry: the code is the credential (doors with a keypad).

        The keypad is limited, not the user (rules.md "Keypad lockout"): 5
        codes in a row that do not open lock its PIN-only entry, and while it
        is locked no code is even looked up.
        """
        door_id, side, now = ctx.door.id, ctx.side, ctx.moment.elapsed
        remaining = self._memory.keypad_remaining(door_id, side, now)
        if remaining > 0.0:
            return self._decision(
                ctx, Reason.LOCKED_OUT,
                detail=f"keypad locked after wrong codes: {remaining:.0f} s left",
            )
        owners = self._site.users_by_pin_hash.get(pin_hash(self._pin_key, code), ())
        users = [self._site.users[u] for u in owners if u in self._site.users]
        for user in users:
            if user.may_open(door_id):
                self._memory.keypad_opened(door_id, side)
                return self._decision(ctx, Reason.ACCESS_GRANTED, user=user)
        # A code that does not open this door counts, whoever it belongs to.
        locks = self._memory.keypad_wrong(door_id, side, now)
        detail = "too many wrong codes: keypad locked for PIN-only entry" if locks else None
        if not users:
            return self._decision(ctx, Reason.PIN_INCORRECT, detail=detail)
        return self._decision(ctx, Reason.NO_ACCESS, user=users[0], detail=detail)

    # --- helpers -----------------------------------------------------------
    @staticmethod
    def _missing_device(door: Door, side: Side, factor: Factor) -> str | None:
        if side is Side.OUT and not door.in_out:
            return "this door has no exit reader"
        if factor in CARD_EQUIVALENT and not door.reader:
            return "this door has no badge reader"
        if factor is Factor.PIN and not door.keypad:
            return "this door has no keypad"
        if factor is Factor.PIN and side is Side.OUT:
            return "the keypad is on the entry side"
        return None

    def _identify(
        self, factor: Factor, user_id: str | None, credential: str | None
    ) -> User | None:
        site = self._site
        if factor is _CARD:
            card_user = site.user_by_card.get(credential or "")
            return site.users.get(card_user) if card_user else None
        if factor is _PIN:
            return None
        user = site.users.get(user_id or "")
        if user is None:
            return None
        if factor is _REMOTE:
            return user
        # A phone factor must come from a phone enrolled to that very user.
        if credential is None or site.user_by_phone.get(credential) != user.id:
            return None
        return user

    @staticmethod
    def _shown_credential(factor: Factor, credential: str | None) -> str | None:
        if factor is Factor.CARD:
            return mask_card(credential or "")
        if factor is Factor.PIN:
            return None
        return credential

    def _decision(
        self,
        ctx: _Context,
        reason: Reason,
        *,
        user: User | None = None,
        credential: str | None = None,
        detail: str | None = None,
    ) -> Decision:
        result = REASON_RESULT[reason]
        resolved = ctx.resolved
        return build_decision(
            new_decision_id(),
            result,
            reason,
            ctx.door.id,
            ctx.side,
            ctx.factor,
            user.id if user else None,
            credential,
            resolved.state,
            resolved.source,
            self._site.revision,
            ctx.moment.utc,
            ctx.door.unlock_seconds if result is _GRANTED else None,
            detail,
        )


def _with_nfc_flow(decision: Decision, flow: Any) -> Decision:
    """The decision with the NFC flow its tap used in its detail (audited).

    Operators tell FAST taps from STANDARD ones by the audit log; only the
    two known values are copied, so evidence never writes free text there.
    """
    shown = _NFC_FLOW_DETAIL.get(flow) if isinstance(flow, str) else None
    if shown is None:
        return decision
    detail = f"{decision.detail}; {shown}" if decision.detail else shown
    return replace(decision, detail=detail)


def _profile_complete(user: User) -> bool:
    """Two-factor doors need both a card-equivalent credential and an entry code."""
    return user.has_card_equivalent and user.pin_hash is not None


def _nearby_evidence_ok(evidence: Mapping[str, Any]) -> bool:
    rssi, age = evidence.get("rssi"), evidence.get("age")
    if not isinstance(rssi, int) or isinstance(rssi, bool):
        return False
    if not isinstance(age, (int, float)) or isinstance(age, bool):
        return False
    return rssi >= NEARBY_RSSI_MIN and 0 <= age <= NEARBY_MAX_AGE_SECONDS


def _describe_evidence(evidence: Mapping[str, Any]) -> str:
    if evidence.get("rssi") is None:
        why = evidence.get("why")  # the bridge's reason (bridge.proximity), when it gave one
        return why if isinstance(why, str) and why else "phone not seen over Bluetooth"
    return f"seen at {evidence.get('rssi')} dBm, {evidence.get('age')} s ago"
