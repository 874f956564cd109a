"""Replacing the site configuration while the service runs.

One entry point, ``reload_site``, for every way a new configuration
arrives: SIGHUP (``serve`` re-reads its site file), ``PUT /v1/site`` (a
site admin), and a fleet revision from the hub. Each goes the same way:

1. The whole document is validated first by the site-file loader (every
   problem placed: file or origin, key path, what was expected), then what
   only a running service can judge: the site id must not change, and a door
   (or door side) a real radio is placed at must not go. Any problem refuses
   the reload as a whole: ``ConfigError`` is raised, nothing changes, the
   refusal is logged with its places, counted, and audited
   (``site_reload_refused``).
2. The swap: the core's site and runtime state (``DoorCore.replace_site``),
   the trusted bridge keys (a new verifier sharing the replay cache), the
   backend keys, the device keys of new door sides, and the listeners
   (simulated phones, sessions), all in one synchronous step. asyncio runs
   one step at a time, so a decision runs wholly before the swap (old
   revision) or wholly after it (new revision); each decision names its
   revision.
3. The audit record (``site_reloaded``: who, from where, old and new
   revision, what changed, what runtime state was dropped) is queued in
   that same step, so in the log every decision before it names the old
   revision and every decision after it the new one. If the audit log
   refuses it, the old site is put back and the error raised: a
   configuration is never in force without its record.

Reloads are serialised by a lock (two PUTs never interleave their checks
and swaps). A document whose revision equals the running one changes
nothing and writes no record (a fleet hub may send a revision again).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from passbridge.core.engine import DroppedState
from passbridge.core.model import Door, Side, Site, TrustedKey, User
from passbridge.core.tokens import FactorTokenVerifier
from passbridge.errors import ConfigError, Problem
from passbridge.service.runtime import Services, backend_trust, bridge_trust
from passbridge.site_file import site_from_text

log = logging.getLogger(__name__)

SITE_RELOADED = "site_reloaded"
SITE_RELOAD_REFUSED = "site_reload_refused"
# At most this many problems go into a refusal's audit record (all are logged).
_AUDITED_PROBLEMS = 50
# A user's fields as a diff names them: never a value, and the keyed code
# hash is just "pin".
_USER_FIELD_NAMES = {"pin_hash": "pin"}


class _Placement(Protocol):
    @property
    def device(self) -> str: ...

    @property
    def door(self) -> str: ...

    @property
    def side(self) -> Side: ...


@runtime_checkable
class PlacedRadio(Protocol):
    """A real radio placed at one door side (``serve --nfc``/``--ble``):
    service/hardware.py's NfcDoorReader and BleDoorRadio."""

    @property
    def placement(self) -> _Placement: ...


@runtime_checkable
class PlacesRadios(Protocol):
    """Real devices placed at several door sides by one radio (service/osdp.py's
    OsdpBus: the readers of one OSDP bus)."""

    @property
    def placements(self) -> Sequence[_Placement]: ...


def _placements(radio: object) -> Sequence[_Placement]:
    if isinstance(radio, PlacedRadio):
        return [radio.placement]
    if isinstance(radio, PlacesRadios):
        return radio.placements
    return []


@dataclass(frozen=True, slots=True)
class Changes:
    """Added, removed and changed ids of one part of the site."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def to_json(self) -> dict[str, list[str]]:
        return {"added": list(self.added), "removed": list(self.removed),
                "changed": list(self.changed)}


@dataclass(frozen=True, slots=True)
class SiteDiff:
    """What a new revision changes, by id (never a code, a key or a card)."""

    doors: Changes
    users: Changes
    # Which fields of each changed user changed ("doors", "pin", "enabled" ...).
    user_fields: dict[str, tuple[str, ...]]
    bridges: Changes
    backends: Changes
    timezone: tuple[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "doors": self.doors.to_json(),
            "users": {**self.users.to_json(),
                      "fields": {u: list(f) for u, f in self.user_fields.items()}},
            "trust": {"bridges": self.bridges.to_json(), "backends": self.backends.to_json()},
            "timezone": (None if self.timezone is None
                         else {"old": self.timezone[0], "new": self.timezone[1]}),
        }

    def summary(self) -> str:
        """One log line's worth: ``doors +a -b ~c; users ~bob``."""
        parts = []
        for name, changes in (("doors", self.doors), ("users", self.users),
                              ("trust.bridges", self.bridges),
                              ("trust.backends", self.backends)):
            if changes:
                marks = [f"+{i}" for i in changes.added] + [f"-{i}" for i in changes.removed]
                marks += [f"~{i}" for i in changes.changed]
                parts.append(f"{name} {' '.join(marks)}")
        if self.timezone is not None:
            parts.append(f"timezone {self.timezone[0]} -> {self.timezone[1]}")
        return "; ".join(parts) or "no visible change"


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What ``reload_site`` did (``PUT /v1/site``'s answer, the fleet's report)."""

    site: str
    old_revision: str
    new_revision: str
    source: str
    actor: str
    diff: SiteDiff
    dropped: DroppedState
    # The audit record's seq; None when nothing changed (same revision).
    seq: int | None

    @property
    def changed(self) -> bool:
        return self.old_revision != self.new_revision

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "old_revision": self.old_revision,
            "new_revision": self.new_revision,
            "changed": self.changed,
            "source": self.source,
            "actor": self.actor,
            "seq": self.seq,
            "changes": self.diff.to_json(),
            "dropped": self.dropped.to_json(),
        }


def _by_id_changes(old: dict[str, Any], new: dict[str, Any]) -> Changes:
    return Changes(
        added=tuple(i for i in new if i not in old),
        removed=tuple(i for i in old if i not in new),
        changed=tuple(i for i in new if i in old and new[i] != old[i]),
    )


def _user_fields(old: User, new: User) -> tuple[str, ...]:
    return tuple(_USER_FIELD_NAMES.get(f.name, f.name) for f in fields(User)
                 if getattr(old, f.name) != getattr(new, f.name))


def _keys(keys: tuple[TrustedKey, ...]) -> dict[str, TrustedKey]:
    return {k.id: k for k in keys}


def site_diff(old: Site, new: Site) -> SiteDiff:
    """Doors, users and trust entries added, removed and changed, by id."""
    users = _by_id_changes(old.users, new.users)
    return SiteDiff(
        doors=_by_id_changes(old.doors, new.doors),
        users=users,
        user_fields={u: _user_fields(old.users[u], new.users[u]) for u in users.changed},
        bridges=_by_id_changes(_keys(old.bridges), _keys(new.bridges)),
        backends=_by_id_changes(_keys(old.backends), _keys(new.backends)),
        timezone=(None if old.timezone.key == new.timezone.key
                  else (old.timezone.key, new.timezone.key)),
    )


def _door_path(new: Site, door: str) -> str:
    index = list(new.doors).index(door)
    return f"doors[{index}]"


def _has_exit(site: Site, door: str) -> bool:
    found = site.doors.get(door)
    return found is not None and found.in_out


def _running_problems(services: Services, new: Site, origin: str) -> list[Problem]:
    """What only the running service can refuse: another site id, or a door
    side that a real radio is placed at going away."""
    old = services.site
    problems: list[Problem] = []
    if new.id != old.id:
        problems.append(Problem(
            origin, "site.id",
            f"the site id cannot change while the service runs: this service serves "
            f"site {old.id!r}, the document says {new.id!r} (restart serve to serve "
            f"another site)"))
    for place in (p for radio in services.radios for p in _placements(radio)):
        door: Door | None = new.doors.get(place.door)
        if door is None:
            problems.append(Problem(
                origin, "doors",
                f"door {place.door!r} is missing, but the radio {place.device} is placed at "
                f"it: keep the door, or restart serve without that radio"))
        elif place.side is Side.OUT and not door.in_out and _has_exit(old, place.door):
            problems.append(Problem(
                origin, f"{_door_path(new, place.door)}.in_out",
                f"door {place.door!r} no longer has an exit side, but the radio "
                f"{place.device} is placed there: keep in_out: true, or restart serve "
                f"without that radio"))
    return problems


async def reload_site(
    services: Services,
    document: str | bytes,
    *,
    source: str,
    actor: str,
    origin: str = "site document",
    base_dir: Path | None = None,
) -> ReloadOutcome:
    """Validate ``document`` (a whole site file, YAML or JSON) and put it in
    force atomically; raise ConfigError, changing nothing, if it has any problem.

    ``source``: where it came from (``sighup``, ``api``, ``fleet``);
    ``actor``: who asked (audited); ``origin``: the name problems are placed
    at (a file path, "PUT /v1/site"). ``public_key_file`` entries are read
    relative to ``base_dir``, by default the folder of the site file
    ``serve`` started with.
    """
    if base_dir is None and services.reloads.path is not None:
        base_dir = services.reloads.path.parent
    async with services.reloads.lock:
        old = services.site
        try:
            new = site_from_text(document, file=origin,
                                 pin_key=services.keystore.pin_key(), base_dir=base_dir)
            problems = _running_problems(services, new, origin)
            if problems:
                raise ConfigError(problems)
        except ConfigError as refused:
            await _refused(services, refused, source=source, actor=actor, revision=old.revision)
            raise
        diff = site_diff(old, new)
        if new.revision == old.revision:
            services.metrics.site_reload(source, "unchanged")
            log.info("site reload (%s by %s): revision %s unchanged; nothing to do",
                     source, actor, old.revision)
            return ReloadOutcome(old.id, old.revision, new.revision, source, actor, diff,
                                 DroppedState(), None)
        return await _swap(services, old, new, diff, source=source, actor=actor)


async def reload_site_file(
    services: Services, path: Path, *, source: str, actor: str
) -> ReloadOutcome:
    """``reload_site`` of a file (SIGHUP: the file ``serve`` started with);
    an unreadable file is a ConfigError placed at its path, like a bad one."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        refused = ConfigError([Problem(str(path), "", f"cannot read: {exc.strerror or exc}")])
        await _refused(services, refused, source=source, actor=actor,
                       revision=services.site.revision)
        raise refused from None
    return await reload_site(services, raw, source=source, actor=actor, origin=str(path),
                             base_dir=path.parent)


async def _swap(
    services: Services, old: Site, new: Site, diff: SiteDiff, *, source: str, actor: str
) -> ReloadOutcome:
    """The swap and its audit record: no await until the record is queued."""
    core, keystore = services.core, services.keystore
    services.device_keys.ensure(new)  # keys for new door sides (idempotent), before the swap
    old_verifier, old_backends = core.tokens, services.backends
    bridges = bridge_trust(new, keystore)
    verifier = (old_verifier.with_keys(bridges) if old_verifier is not None
                else FactorTokenVerifier(new.id, bridges, clock=services.clock))
    backends = backend_trust(new, keystore)
    # --- from here to the record's queueing, nothing awaits -----------------
    dropped = core.replace_site(new, tokens=verifier)
    services.backends = backends
    _tell_listeners(services, old, new)
    payload = {
        "actor": actor,
        "source": source,
        "site": new.id,
        "old_revision": old.revision,
        "new_revision": new.revision,
        "changes": diff.to_json(),
        "dropped": dropped.to_json(),
        "at": services.clock.now().isoformat(),
    }
    try:
        seq = await services.audit.record_change(SITE_RELOADED, payload)
    except Exception:
        # No configuration is in force without its record: put the old one back.
        log.exception("site reload (%s by %s): the audit log refused the record; "
                      "revision %s stays in force", source, actor, old.revision)
        core.replace_site(old, tokens=old_verifier)
        services.backends = old_backends
        _tell_listeners(services, new, old)
        raise
    outcome = ReloadOutcome(new.id, old.revision, new.revision, source, actor, diff, dropped,
                            seq)
    services.reloads.last = outcome
    services.metrics.site_reload(source, "applied")
    gone = [f"{k} {', '.join(v)}" for k, v in dropped.to_json().items() if v]
    log.info("site reloaded (%s by %s): revision %s -> %s: %s%s", source, actor,
             old.revision, new.revision, diff.summary(),
             f"; dropped: {'; '.join(gone)}" if gone else "")
    return outcome


def _tell_listeners(services: Services, old: Site, new: Site) -> None:
    """Each listener follows the swap; one that fails is logged, not fatal
    (the core's site is already the one in force)."""
    for listener in services.reloads.listeners:
        try:
            listener(old, new)
        except Exception:
            log.exception("a site reload listener failed (%r)", listener)


async def _refused(
    services: Services, refused: ConfigError, *, source: str, actor: str, revision: str
) -> None:
    """Log every problem with its place, count the refusal, audit it."""
    log.warning("site reload refused (%s by %s); revision %s stays in force:\n%s",
                source, actor, revision, "\n".join(f"  {p}" for p in refused.problems))
    services.metrics.site_reload(source, "refused")
    problems = [{"file": p.file, "place": p.path, "message": p.message}
                for p in refused.problems[:_AUDITED_PROBLEMS]]
    try:
        await services.audit.record_change(SITE_RELOAD_REFUSED, {
            "actor": actor, "source": source, "revision": revision,
            "problems": problems, "problem_count": len(refused.problems),
            "at": services.clock.now().isoformat(),
        })
    except Exception:  # the refusal stands; the log line above says why
        log.exception("could not audit a refused site reload")
