#!/usr/bin/env python3
"""Benchmark of the door core: decisions, signed tokens, site size, durable audit.

Every ratio compares two things measured in this same run, round by round and
interleaved, because the machines this runs on are shared and noisy: a slow
moment hits both sides of a round alike, and the report gives medians.

    .venv/bin/python scripts/bench_core.py            # full run (well under a minute)
    .venv/bin/python scripts/bench_core.py --quick    # a few seconds, rougher figures

Targets (issue 9 for tokens, issue 2 item 9 for the rest): the core's token
verify + decide at least 0.9 of PyJWT's own ``jwt.decode`` rate on the same
tokens (the core adds at most 10% over the library); a decision with
100,000 users at most 1.2 times one with 10; group commit at least 5 times
the one-commit-per-decision rate. Exit status is 0
when every target holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jwt  # noqa: E402

from passbridge.adapters.audit_sqlite import AuditLog  # noqa: E402
from passbridge.clock import Clock, SystemClock  # noqa: E402
from passbridge.core.decision import Decision, Presentation, new_decision_id  # noqa: E402
from passbridge.core.engine import DoorCore  # noqa: E402
from passbridge.core.model import Factor, Reason, Side, Site, TrustedKey  # noqa: E402
from passbridge.core.tokens import (  # noqa: E402
    FactorTokenMinter,
    FactorTokenVerifier,
    generate_private_key,
    public_key_to_pem,
)
from passbridge.site_file import parse_site  # noqa: E402

PIN_KEY = b"bench-pin-key-32-bytes-long-----"
BRIDGE = "bridge-bench"
ALL_WEEK = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


# --- sites ---------------------------------------------------------------------


def card_number(i: int) -> str:
    return str(40_000_000 + i)


def pin_code(i: int) -> str:
    return f"{(i * 7919) % 1_000_000:06d}"


def site_document(users: int) -> dict[str, Any]:
    """A site with a two-factor door (all day, every day) and an ordinary door."""
    return {
        "site": {"id": "bench", "timezone": "Europe/Berlin"},
        "doors": [
            {
                "id": "front", "reader": True, "keypad": True,
                "schedule": [
                    {"days": ALL_WEEK, "start": "00:00", "end": "24:00", "state": "two_factor"}
                ],
            },
            {"id": "side", "reader": True, "keypad": False},
        ],
        "users": [
            {
                "id": f"u{i}", "cards": [card_number(i)], "pin": pin_code(i),
                "phones": [f"phone-{i}"], "doors": "all",
            }
            for i in range(users)
        ],
    }


def build_site(users: int) -> Site:
    return parse_site(site_document(users), file="bench-site.yaml", pin_key=PIN_KEY)


# --- measuring -------------------------------------------------------------------


@dataclass
class Rounds:
    """Per-round seconds per operation for one measured thing."""

    name: str
    per_op: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.per_op)

    @property
    def rate(self) -> float:
        return 1.0 / self.median

    def spread(self) -> str:
        lo, hi = min(self.per_op), max(self.per_op)
        return f"{1 / hi:,.0f}-{1 / lo:,.0f}"


def timed(batch: Callable[[], int]) -> float:
    """Seconds per operation of one batch (``batch`` returns how many it did)."""
    gc.collect()
    started = time.perf_counter()
    done = batch()
    return (time.perf_counter() - started) / done


def paired_ratio(numerator: Rounds, denominator: Rounds) -> float:
    """Median of the per-round ratios: each round's two sides saw the same noise."""
    return statistics.median(
        n / d for n, d in zip(numerator.per_op, denominator.per_op, strict=True)
    )


# --- 1. card and PIN decisions ---------------------------------------------------------


def two_factor_pairs(core: DoorCore, clock: Clock, users: list[int]) -> tuple[float, float, int]:
    """Card then PIN for each user: seconds spent in card steps, in PIN steps, pairs."""
    decide = core.decide
    moment = clock.moment
    now = time.perf_counter
    card_s = pin_s = 0.0
    for i in users:
        t0 = now()
        first = decide(Presentation(Factor.CARD, "front", Side.IN, credential=card_number(i)),
                       moment())
        t1 = now()
        second = decide(Presentation(Factor.PIN, "front", Side.IN, secret=pin_code(i)),
                        moment())
        t2 = now()
        card_s += t1 - t0
        pin_s += t2 - t1
        if first.reason is not Reason.PIN_REQUIRED or second.reason is not (
            Reason.TWO_FACTOR_COMPLETE
        ):
            raise SystemExit(f"unexpected decisions {first.reason} / {second.reason}")
    return card_s, pin_s, len(users)


def bench_decisions(rounds: int, pairs: int) -> tuple[Rounds, Rounds, Rounds]:
    clock = SystemClock()
    core = DoorCore(build_site(10), pin_key=PIN_KEY)
    card, pin, pair = Rounds("card", []), Rounds("pin", []), Rounds("pair", [])
    two_factor_pairs(core, clock, [i % 10 for i in range(200)])  # warm up
    for _ in range(rounds):
        gc.collect()
        card_s, pin_s, n = two_factor_pairs(core, clock, [i % 10 for i in range(pairs)])
        card.per_op.append(card_s / n)
        pin.per_op.append(pin_s / n)
        pair.per_op.append((card_s + pin_s) / n)
    return card, pin, pair


# --- 2. token verify + decide against PyJWT's own verify -----------------------------------


def bench_tokens(rounds: int, batch: int) -> tuple[Rounds, Rounds]:
    """The same fresh tokens through ``jwt.decode`` and through ``DoorCore.decide_token``."""
    clock = SystemClock()
    site = build_site(10)
    key = generate_private_key("ES256")
    trusted = TrustedKey(BRIDGE, "ES256", public_key_to_pem(key))
    verifier = FactorTokenVerifier(site.id, [trusted], clock=clock)
    core = DoorCore(site, pin_key=PIN_KEY, tokens=verifier)
    minter = FactorTokenMinter(BRIDGE, key, site_id=site.id, clock=clock, kid=BRIDGE)
    public = key.public_key()

    def mint(n: int) -> list[str]:
        return [
            minter.mint(user=f"u{i % 10}", door="side", side=Side.IN, factor=Factor.NFC,
                        credential=f"phone-{i % 10}", evidence={"txn": f"{i:032x}"})
            for i in range(n)
        ]

    def pyjwt_batch(tokens: list[str]) -> Callable[[], int]:
        def run() -> int:
            decode = jwt.decode
            for token in tokens:
                decode(token, public, algorithms=["ES256"], audience=site.id)
            return len(tokens)
        return run

    def token_batch(tokens: list[str]) -> Callable[[], int]:
        def run() -> int:
            decide = core.decide_token
            moment = clock.moment
            for token in tokens:
                decision = decide(token, moment())
                if decision.reason is not Reason.ACCESS_GRANTED:
                    raise SystemExit(f"token decision was {decision.reason}: {decision.detail}")
            return len(tokens)
        return run

    warm = mint(100)
    timed(pyjwt_batch(warm))
    timed(token_batch(warm))
    library, full = Rounds("PyJWT verify", []), Rounds("verify+decide", [])
    for r in range(rounds):
        tokens = mint(batch)  # fresh: each jti is single-use
        order = [(library, pyjwt_batch(tokens)), (full, token_batch(tokens))]
        if r % 2:
            order.reverse()
        for into, run in order:
            into.per_op.append(timed(run))
    return library, full


# --- 3. 10 users against 100,000 users ---------------------------------------------------


def bench_site_size(rounds: int, pairs: int, big: int) -> tuple[Rounds, Rounds, float]:
    clock = SystemClock()
    started = time.perf_counter()
    big_site = build_site(big)
    build_s = time.perf_counter() - started
    small_core = DoorCore(build_site(10), pin_key=PIN_KEY)
    big_core = DoorCore(big_site, pin_key=PIN_KEY)
    rng = random.Random(7)
    small, large = Rounds("10 users", []), Rounds(f"{big:,} users", [])
    two_factor_pairs(small_core, clock, list(range(10)) * 20)
    two_factor_pairs(big_core, clock, rng.sample(range(big), 200))
    for r in range(rounds):
        small_users = [i % 10 for i in range(pairs)]
        big_users = rng.sample(range(big), pairs)  # a different user almost every time
        order: list[tuple[Rounds, DoorCore, list[int]]] = [
            (small, small_core, small_users), (large, big_core, big_users)
        ]
        if r % 2:
            order.reverse()
        for into, core, users in order:
            gc.collect()
            card_s, pin_s, n = two_factor_pairs(core, clock, users)
            into.per_op.append((card_s + pin_s) / n)
    return small, large, build_s


# --- 4. durable audit: one commit per decision against group commit ----------------------------


async def _drive_audit(audit: AuditLog, decisions: list[Decision], tasks: int,
                       seconds: float) -> int:
    """``tasks`` concurrent submitters recording decisions until the deadline.

    The decisions are made beforehand: this measures recording them, not
    making them. Each run has a fresh database, so ids need only be unique
    within one run.
    """
    deadline = time.perf_counter() + seconds
    source = iter(decisions)
    done = 0

    async def submitter() -> None:
        nonlocal done
        for decision in source:
            await audit.record(decision)
            done += 1
            if time.perf_counter() >= deadline:
                return

    await asyncio.gather(*(submitter() for _ in range(tasks)))
    return done


def audit_rate(directory: Path, decisions: list[Decision], *, one_per_commit: bool, tasks: int,
               seconds: float) -> tuple[float, float]:
    """Committed decisions per second, and records per commit, on a fresh database."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        audit = AuditLog(Path(tmp) / "audit.db", one_per_commit=one_per_commit)
        try:
            asyncio.run(_drive_audit(audit, decisions[-200:], tasks, 0.05))  # warm the file
            before = audit.stats
            gc.collect()
            started = time.perf_counter()
            done = asyncio.run(_drive_audit(audit, decisions[:-200], tasks, seconds))
            elapsed = time.perf_counter() - started
            after = audit.stats
        finally:
            audit.close()
    commits = max(1, after.commits - before.commits)
    return done / elapsed, (after.records - before.records) / commits


def bench_audit(rounds: int, seconds: float, tasks: int,
                directory: Path) -> tuple[Rounds, Rounds, list[float]]:
    core = DoorCore(build_site(10), pin_key=PIN_KEY)
    template = core.decide(Presentation(Factor.CARD, "side", Side.IN, credential=card_number(3)),
                           SystemClock().moment())
    # Enough for a run at 150k decisions/s; a run that uses them all just ends early.
    decisions = [replace(template, id=new_decision_id()) for _ in range(int(150_000 * seconds))]
    single, group = Rounds("one commit per decision", []), Rounds("group commit", [])
    batch_sizes: list[float] = []
    for r in range(rounds):
        order = [(single, True), (group, False)]
        if r % 2:
            order.reverse()
        for into, one in order:
            rate, per_commit = audit_rate(directory, decisions, one_per_commit=one, tasks=tasks,
                                          seconds=seconds)
            into.per_op.append(1.0 / rate)
            if not one:
                batch_sizes.append(per_commit)
    return single, group, batch_sizes


# --- report ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, rougher figures")
    parser.add_argument("--users", type=int, default=100_000, help="the large site's user count")
    parser.add_argument("--tasks", type=int, default=64, help="concurrent audit submitters")
    parser.add_argument("--audit-dir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where the audit databases go (use a real disk, not tmpfs)")
    args = parser.parse_args(argv)

    quick = args.quick
    rounds = 3 if quick else 9
    started = time.perf_counter()

    card, pin, pair = bench_decisions(rounds, 500 if quick else 3000)
    library, full = bench_tokens(rounds, 150 if quick else 800)
    small, large, build_s = bench_site_size(rounds, 500 if quick else 3000, args.users)
    single, group, batches = bench_audit(3 if quick else 5, 0.3 if quick else 1.0, args.tasks,
                                         args.audit_dir)

    token_ratio = paired_ratio(library, full)  # (s per PyJWT verify) / (s per verify+decide)
    size_ratio = paired_ratio(large, small)
    audit_ratio = paired_ratio(single, group)

    print(f"passbridge core benchmark ({'quick' if quick else 'full'} run, {rounds} interleaved "
          f"rounds, medians; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    print()
    width = 58
    print(f"{'measure':<{width}} {'median':>12} {'range over rounds':>20}")
    print("-" * (width + 34))

    def row(label: str, rounds_: Rounds, unit: str = "/s") -> None:
        print(f"{label:<{width}} {rounds_.rate:>10,.0f}{unit} {rounds_.spread():>20}")

    row("1. card step (two-factor door -> pin_required)", card)
    row("1. PIN step (-> two_factor_complete)", pin)
    row("1. card + PIN pairs", pair)
    row("2. PyJWT jwt.decode of the same ES256 tokens", library)
    row("2. DoorCore.decide_token on fresh ES256 tokens", full)
    row("3. card + PIN pairs, 10 users", small)
    row(f"3. card + PIN pairs, {args.users:,} users", large)
    row(f"4. audit, one commit per decision ({args.tasks} tasks)", single)
    row(f"4. audit, group commit ({args.tasks} tasks)", group)
    print()
    print(f"   decision time: card {card.median * 1e6:.1f} us, PIN {pin.median * 1e6:.1f} us; "
          f"verify+decide {full.median * 1e6:.1f} us vs PyJWT verify {library.median * 1e6:.1f} us")
    print(f"   {args.users:,}-user site built by parse_site in {build_s:.1f} s; group commit "
          f"averaged {statistics.median(batches):.1f} decisions per commit")
    print()
    targets = [
        ("core verify+decide / PyJWT verify rate", token_ratio, ">=", 0.9),
        (f"{args.users:,}-user / 10-user decision time", size_ratio, "<=", 1.2),
        ("group commit / one-per-decision rate", audit_ratio, ">=", 5.0),
    ]
    print(f"{'target':<{width}} {'ratio':>12} {'goal':>10} {'':>8}")
    print("-" * (width + 34))
    ok = True
    for label, value, op, goal in targets:
        passed = value >= goal if op == ">=" else value <= goal
        ok = ok and passed
        print(f"{label:<{width}} {value:>12.2f} {op + ' ' + format(goal, 'g'):>10} "
              f"{'PASS' if passed else 'MISS':>8}")
    print()
    print(f"run took {time.perf_counter() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
