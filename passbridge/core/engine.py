"""The door decision core: one function of (site, runtime state, factor, moment).

The order of checks is the contract's and is written down in
docs/decisions.md ("Order of checks in a decision"): ``DoorCore._decide``
lists its numbered steps, one method each. Nothing here does I/O; the
caller records each decision in the audit log before it answers anyone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from passbridge.clock import Moment
from passbridge.core.credentials import mask_card
from passbridge.core.decision import Decision, Presentation, ResolvedState, new_decision_id
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
from passbridge.core.policy import NEARBY_RSSI_MIN, NEARBY_WINDOW_SECONDS
from passbridge.core.schedule import (
    Override,
    minute_is_uniform,
    override_minutes_problem,
    resolve_state,
)
from passbridge.core.tokens import (
    FactorTokenVerifier,
    TokenRejection,
    UnverifiedToken,
    VerifiedBackendRequest,
)
from passbridge.core.two_factor import Lockout, PendingCard, TwoFactorMemory
from passbridge.errors import ConfigError, Problem, UnknownDoor

log = logging.getLogger(__name__)

_LOCKDOWN = ResolvedState(DoorState.LOCKED, "lockdown")
# The NFC flow a tap used (the bridge's ``ev.flow``), as the decision's detail shows it.
_NFC_FLOW_DETAIL = {"STANDARD": "NFC STANDARD tap", "FAST": "NFC FAST tap"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MINUTE = timedelta(minutes=1)


@dataclass(slots=True)
class _Context:
    """One presentation as every step of a decision sees it.

    ``user`` is whom the credential names (None when nobody, and always for
    a PIN, whose code is looked up in its own steps); ``credential`` is as a
    decision shows it (a badge masked, a PIN never); ``secret`` is a PIN's
    code, kept out of any repr. Made and read within one decision and never
    kept, so not frozen: a frozen dataclass's ``__init__`` costs half a
    microsecond more per decision here.
    """

    door: Door
    side: Side
    factor: Factor
    resolved: ResolvedState
    moment: Moment
    user: User | None = None
    credential: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    secret: str = field(default="", repr=False)

    @property
    def entering_two_factor(self) -> bool:
        """Two-factor applies only on the way in (In/Out doors leave on one factor)."""
        return self.resolved.state is DoorState.TWO_FACTOR and self.side is Side.IN


@dataclass(frozen=True, slots=True)
class DroppedState:
    """Runtime state a new site ended (``DoorCore.replace_site``), as the
    reload's audit record names it: door sides ``door/side``, user lockouts
    ``user@door``, doors by id. Never a code or a card number."""

    pending: tuple[str, ...] = ()
    lockouts: tuple[str, ...] = ()
    keypad_lockouts: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    door_lockdowns: tuple[str, ...] = ()

    def to_json(self) -> dict[str, list[str]]:
        return {
            "pending_pin_steps": list(self.pending),
            "lockouts": list(self.lockouts),
            "keypad_lockouts": list(self.keypad_lockouts),
            "overrides": list(self.overrides),
            "door_lockdowns": list(self.door_lockdowns),
        }


class DoorCore:
    """Decides; keeps the little runtime state decisions depend on.

    Not thread-safe, like ``h11.Connection``: one caller at a time, and
    nothing here takes a lock. The service calls it from its event loop
    only: the HTTP handlers, the Bluetooth bridge, the simulators and the
    scenario runner run there, and the NFC reader thread does not call it
    but hands each tap's decision to the loop
    (``asyncio.run_coroutine_threadsafe`` in ``adapters/nfc_reader.py``)
    and waits for the answer. The one thing read from another thread is
    ``site`` (the NFC reader's FAST key order, ``bridge/fast_keys.py``): an
    immutable ``Site`` that ``replace_site`` swaps in one assignment.
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

    # --- configuration ---------------------------------------------------
    @property
    def site(self) -> Site:
        return self._site

    def replace_site(
        self, site: Site, *, tokens: FactorTokenVerifier | None = None
    ) -> DroppedState:
        """Apply a new, already validated configuration, keeping the runtime
        state that still means the same thing (a live reload,
        ``service/site_reload.py``). Synchronous and in place: the
        controller, bridges and routes all hold this one core, and no
        decision can run between the first and the last assignment.

        ``tokens``: the verifier for the new site's trusted keys (it should
        share the old one's replay cache: ``FactorTokenVerifier.with_keys``);
        None keeps the current one.

        What survives and what goes (docs/decisions.md "Live site reload"):

        - a pending PIN step, while its door can still take one (reader and
          keypad) and its user still exists, may open the door, has a card
          and a code, and has the same cards, phones and code as when the
          step began (the step was started on those terms);
        - a user's lockout at a door, and a keypad's lockout, while the door
          (and the user) exist: a reload must never hand out fresh tries;
        - an override, while its door exists and can hold its state;
        - a door's lockdown while the door exists; the site lockdown always.

        Returns what went, for the reload's audit record.
        """
        old = self._site

        def keep_pending(door_id: str, side: Side, card: PendingCard) -> bool:
            door = site.doors.get(door_id)
            user, before = site.users.get(card.user), old.users.get(card.user)
            return (door is not None and door.supports_two_factor
                    and (side is Side.IN or door.in_out)
                    and user is not None and before is not None
                    and user.may_open(door_id) and _profile_complete(user)
                    and (user.cards, user.phones, user.pin_hash)
                    == (before.cards, before.phones, before.pin_hash))

        pending, lockouts, keypads = self._memory.retain(
            pending=keep_pending,
            lockout=lambda user, door: user in site.users and door in site.doors,
            keypad=lambda door, _side: door in site.doors,
        )
        overrides: list[str] = []
        for door_id in sorted(self._overrides):
            door = site.doors.get(door_id)
            override = self._overrides[door_id]
            if door is None or (
                override.state is DoorState.TWO_FACTOR and not door.supports_two_factor
            ):
                del self._overrides[door_id]
                overrides.append(door_id)
        lockdowns = sorted(d for d in self._door_lockdowns if d not in site.doors)
        self._door_lockdowns.difference_update(lockdowns)
        self._schedule_cache.clear()
        if tokens is not None:
            self._tokens = tokens
        self._site = site
        return DroppedState(
            pending=tuple(f"{d}/{s.value}" for d, s in pending),
            lockouts=tuple(f"{u}@{d}" for u, d in lockouts),
            keypad_lockouts=tuple(f"{d}/{s.value}" for d, s in keypads),
            overrides=tuple(overrides),
            door_lockdowns=tuple(lockdowns),
        )

    @property
    def tokens(self) -> FactorTokenVerifier | None:
        """The verifier of factor tokens (a reload builds the next from it)."""
        return self._tokens

    def door(self, door_id: str) -> Door:
        door = self._site.doors.get(door_id)
        if door is None:
            raise UnknownDoor(door_id)
        return door

    # --- door state ------------------------------------------------------
    def door_state(self, door_id: str, moment: Moment) -> ResolvedState:
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
        return self._overrides.get(door_id)

    def set_override(
        self, door_id: str, state: DoorState | None, minutes: int | None, moment: Moment
    ) -> ResolvedState:
        """A timed manual state for a door (admin API, scenario ``configure``)."""
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
        if door_id is None:
            self._site_lockdown = active
            return
        self.door(door_id)
        if active:
            self._door_lockdowns.add(door_id)
        else:
            self._door_lockdowns.discard(door_id)

    def lockdown(self) -> tuple[bool, frozenset[str]]:
        return self._site_lockdown, frozenset(self._door_lockdowns)

    def pending_steps(self, door_id: str, moment: Moment) -> list[tuple[Side, PendingCard, float]]:
        """The door's cards still waiting for their entry code, by side, with
        the seconds each has left: what an admin sees as "entry code needed"
        (the console's doors view). Reads only: an expired card is left for
        the next decision at that side to end, as it always was."""
        door = self.door(door_id)
        now = moment.elapsed
        return [(side, card, door.pin_timeout - (now - card.started))
                for side, card in self._memory.pending_at(door_id)
                if not card.expired(now, door.pin_timeout)]
    # --- lockouts --------------------------------------------------------
    def lockouts(self, moment: Moment) -> list[Lockout]:
        """The lockouts in force at ``moment`` (two-factor users, then keypads)."""
        return self._memory.lockouts_in_force(moment.elapsed)

    def clear_lockout(self, door_id: str, user_id: str, moment: Moment) -> bool:
        """Lift ``user_id``'s two-factor lockout at a door (UnknownDoor if
        there is no such door); False when none is in force."""
        self.door(door_id)
        return self._memory.clear_lockout(user_id, door_id, moment.elapsed)

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
            checked = self._tokens.verify(token, moment.utc)
        except Exception:  # fail secure on any verifier fault
            log.exception("token verifier failed")
            return self._reject_token(Reason.INTERNAL_ERROR, "verifier error", door_hint, moment)
        if isinstance(checked, TokenRejection):
            if not (checked.verified or decide_unverified):
                raise UnverifiedToken(checked)
            return self._reject_token(checked.reason, checked.detail, door_hint, moment)
        if door_hint is not None and checked.door != door_hint:
            return self._reject_token(
                Reason.TOKEN_INVALID, "token is for another door", door_hint, moment
            )
        return self._decide_verified(
            checked.door, checked.factor, checked.side, checked.user, checked.credential,
            checked.evidence, moment,
        )

    def decide_remote(
        self, request: VerifiedBackendRequest, door_id: str, side: Side, moment: Moment
    ) -> Decision:
        """A remote unlock: the app backend's verified request, as it is.

        The backend's signed request is the statement decided on (interfaces.md):
        no factor token is minted for it. Only a VerifiedBackendRequest (what
        ``verify_backend_request`` returns for a request whose signature,
        claims, times and ``jti`` checked out) is accepted, and only for the
        door it names.
        """
        if not isinstance(request, VerifiedBackendRequest):
            raise TypeError("decide_remote takes a VerifiedBackendRequest")
        if request.door != door_id:
            return self._reject_token(
                Reason.TOKEN_INVALID, "request is for another door", door_id, moment
            )
        return self._decide_verified(
            door_id, Factor.REMOTE, side, request.user, f"backend:{request.issuer}",
            {"backend": request.issuer, "request": request.jti}, moment,
        )

    def _decide_verified(
        self, door_id: str, factor: Factor, side: Side, user: str, credential: str,
        evidence: dict[str, Any], moment: Moment,
    ) -> Decision:
        """A verified mobile factor, decided (evidence parsed from the very token)."""
        door = self._site.doors.get(door_id)
        if door is None:
            raise UnknownDoor(door_id)
        decision = self._guarded(door, factor, side, user, credential, None, evidence, moment)
        if factor is Factor.NFC and decision.reason is not Reason.INTERNAL_ERROR:
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
        door = self.door(door_id)
        if factor in CARD_EQUIVALENT:
            # A tap that failed authentication was still a card at the
            # reader: it ends the pending card like any other card step.
            self._memory.clear(door.id, side)
        resolved = self._safe_resolve(door, moment)
        return self._decision(
            _Context(door, side, factor, resolved, moment), reason,
            credential=credential, detail=detail,
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
        except Exception:  # a denial must still be recordable
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
        try:
            return self._decide(
                door, factor, side, user_id, credential, secret, evidence, moment
            )
        except Exception:
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
        """docs/decisions.md "Order of checks in a decision", step by step:
        each step answers with a decision or lets the next one look."""
        ctx = _Context(
            door, side, factor, self._resolve(door, moment), moment,
            user=self._identify(factor, user_id, credential),
            credential=self._shown_credential(factor, credential),
            evidence=evidence, secret=secret or "",
        )
        # 1. Token: decide_token verified it before this call (a wired factor has none).
        no_device = self._check_device(ctx)  # 2. Device
        if no_device is not None:
            return no_device
        # A card or NFC step ends the card pending at this door side whatever
        # its own result (rules.md "Exact readings": a new card at the reader
        # means a new person at the door); a pending step of its own may follow.
        if factor in CARD_EQUIVALENT:
            self._memory.clear(door.id, side)
        for step in (
            self._check_door_state,  # 3. Door state
            self._check_pin,  # a PIN is its own credential: its steps 4-7 in _decide_pin
            self._check_credential,  # 4. Credential
            self._check_access,  # 5. Access
            self._check_path,  # 6. Path evidence and permission
            self._check_two_factor_entry,  # 7. Two-factor entry
        ):
            decision = step(ctx)
            if decision is not None:
                return decision
        return self._answer(ctx, Reason.ACCESS_GRANTED)  # 8. Otherwise granted

    def _check_device(self, ctx: _Context) -> Decision | None:
        """2. The device must exist on this door and side."""
        missing = self._missing_device(ctx.door, ctx.side, ctx.factor)
        if missing is None:
            return None
        # Not ``_answer``: nobody is named by a read at a device that is not there.
        return self._decision(ctx, Reason.NO_SUCH_DEVICE, credential=ctx.credential,
                              detail=missing)

    def _check_door_state(self, ctx: _Context) -> Decision | None:
        """3. Lockdown and locked doors deny everyone but a site admin's remote
        unlock; an unlocked door needs nothing (the presentation is logged)."""
        state, user = ctx.resolved.state, ctx.user
        if state is DoorState.LOCKED:
            reason = Reason.LOCKDOWN if ctx.resolved.source == "lockdown" else Reason.DOOR_LOCKED
            if (ctx.factor is Factor.REMOTE and user is not None and user.is_site_admin
                    and user.may_open(ctx.door.id)):
                return self._answer(ctx, Reason.ACCESS_GRANTED,
                                    detail=f"site admin remote unlock during {reason.value}")
            return self._answer(ctx, reason)
        if state is DoorState.UNLOCKED:
            return self._answer(ctx, Reason.DOOR_UNLOCKED)
        return None

    def _check_pin(self, ctx: _Context) -> Decision | None:
        """A PIN names its user by the card pending before it (two-factor) or
        by the code itself (PIN-only entry): docs/decisions.md "Two-factor details"."""
        return self._decide_pin(ctx, ctx.secret) if ctx.factor is Factor.PIN else None

    def _check_credential(self, ctx: _Context) -> Decision | None:
        """4. An unknown card or user, or a phone not enrolled to the token's user."""
        return self._answer(ctx, Reason.UNKNOWN_CREDENTIAL) if ctx.user is None else None

    def _check_access(self, ctx: _Context) -> Decision | None:
        """5. A disabled user, or a door outside the user's doors."""
        user = ctx.user
        if user is None or user.may_open(ctx.door.id):
            return None
        detail = "user disabled" if not user.enabled else "door not in the user's access"
        return self._answer(ctx, Reason.NO_ACCESS, detail=detail)

    def _check_path(self, ctx: _Context) -> Decision | None:
        """6. Path permission (remote) and path evidence (nearby, Bluetooth)."""
        user, factor, evidence = ctx.user, ctx.factor, ctx.evidence
        if factor is Factor.REMOTE and user is not None and not (
                user.remote_unlock or user.is_site_admin):
            return self._answer(ctx, Reason.REMOTE_NOT_PERMITTED)
        if factor is Factor.NEARBY and not _nearby_evidence_ok(evidence):
            return self._answer(ctx, Reason.NOT_NEARBY, detail=_describe_evidence(evidence))
        if factor is Factor.BLE:
            if ctx.entering_two_factor:  # before the RSSI is even considered
                return self._answer(ctx, Reason.BLE_NOT_ALLOWED)
            rssi, floor = evidence.get("rssi"), ctx.door.ble_rssi_min
            if not isinstance(rssi, int) or isinstance(rssi, bool) or rssi < floor:
                return self._answer(ctx, Reason.TOO_FAR,
                                    detail=f"rssi {rssi} below the door's {floor} dBm")
        return None

    def _check_two_factor_entry(self, ctx: _Context) -> Decision | None:
        """7. Entering a two-factor door: a card waits for its PIN; Nearby and
        Remote bypass it unless the door is strict or the profile incomplete."""
        user = ctx.user
        if not ctx.entering_two_factor or user is None:
            return None
        if ctx.factor in CARD_EQUIVALENT:
            return self._card_step(ctx, user)
        if ctx.door.strict_two_factor:
            return self._answer(ctx, Reason.BYPASS_DISABLED)
        if not _profile_complete(user):
            return self._answer(ctx, Reason.PROFILE_INCOMPLETE)
        bypass = Reason.BYPASS_NEARBY if ctx.factor is Factor.NEARBY else Reason.BYPASS_REMOTE
        return self._answer(ctx, bypass)

    def _card_step(self, ctx: _Context, user: User) -> Decision:
        # _decide has already ended the card that was waiting here.
        if not _profile_complete(user):
            return self._answer(ctx, Reason.PROFILE_INCOMPLETE)
        now = ctx.moment.elapsed
        if self._memory.locked_out(user.id, ctx.door.id, now):
            remaining = self._memory.lockout_remaining(user.id, ctx.door.id, now)
            return self._answer(ctx, Reason.LOCKED_OUT,
                                detail=f"{remaining:.0f} s of lockout left")
        self._memory.start(ctx.door.id, ctx.side,
                           PendingCard(user.id, ctx.credential, ctx.factor, now))
        return self._answer(ctx, Reason.PIN_REQUIRED)

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
        if factor is Factor.CARD:
            card_user = site.user_by_card.get(credential or "")
            return site.users.get(card_user) if card_user else None
        if factor is Factor.PIN:
            return None
        user = site.users.get(user_id or "")
        if user is None:
            return None
        if factor is Factor.REMOTE:
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

    def _answer(self, ctx: _Context, reason: Reason, *, detail: str | None = None) -> Decision:
        """The decision naming the presentation's user and credential."""
        return self._decision(ctx, reason, user=ctx.user, credential=ctx.credential,
                              detail=detail)

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
        return Decision(
            id=new_decision_id(),
            result=result,
            reason=reason,
            door=ctx.door.id,
            side=ctx.side,
            factor=ctx.factor,
            user=user.id if user else None,
            credential=credential,
            state=ctx.resolved.state,
            state_source=ctx.resolved.source,
            revision=self._site.revision,
            at=ctx.moment.utc,
            unlock_seconds=ctx.door.unlock_seconds if result is Result.GRANTED else None,
            detail=detail,
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
    return rssi >= NEARBY_RSSI_MIN and 0 <= age <= NEARBY_WINDOW_SECONDS


def _describe_evidence(evidence: Mapping[str, Any]) -> str:
    if evidence.get("rssi") is None:
        why = evidence.get("why")  # the bridge's reason (bridge.proximity), when it gave one
        return why if isinstance(why, str) and why else "phone not seen over Bluetooth"
    return f"seen at {evidence.get('rssi')} dBm, {evidence.get('age')} s ago"
