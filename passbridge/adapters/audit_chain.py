"""The audit log's hash chain: each record vouches for every record before it.

Every row of ``events`` carries ``hash``, 64 lowercase hex digits:

    hash(n) = SHA-256( hash(n-1) as 32 raw bytes || canonical_bytes(row n) )

with ``hash(0)`` = 32 zero bytes (``GENESIS``) for the first record.

``canonical_bytes`` of a row is the JSON object of its columns other than
``hash`` (``seq``, ``kind``, ``at``, ``decision_id``, ``result``, ``reason``,
``door``, ``side``, ``user``, ``credential``, ``factor``, ``state``,
``state_source``, ``revision``, ``unlock_seconds``, ``detail``, ``payload``),
each with the value stored in SQLite (text, integer or null; ``payload`` is
the stored JSON text, as a string), keys sorted, no whitespace, non-ASCII
characters as themselves, encoded UTF-8. For these value types that is
exactly RFC 8785 (JSON Canonicalization Scheme), so an outside system can
recompute it with any JCS library. ``seq`` is inside the hashed bytes, so a
record moved to another place in the log no longer matches its hash.

Anyone who can write the file can rewrite every hash from a point on; what
the chain gives is that the newest hash, once copied elsewhere
(``GET /v1/audit/head``), pins down everything before it.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

GENESIS = bytes(32)
# The columns in canonical_bytes, in the table's order (the order rows are
# read and written in); ``hash`` follows them in a full row.
COLUMNS = (
    "seq", "kind", "at", "decision_id", "result", "reason", "door", "side", "user",
    "credential", "factor", "state", "state_source", "revision", "unlock_seconds", "detail",
    "payload",
)
_SORTED = tuple(sorted(range(len(COLUMNS)), key=lambda i: COLUMNS[i]))
_SORTED_NAMES = tuple(COLUMNS[i] for i in _SORTED)
_sorted_values = operator.itemgetter(*_SORTED)
# One encoder for every record: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_bytes(row: Sequence[Any]) -> bytes:
    """The bytes a record's hash covers; ``row`` holds the values of ``COLUMNS`` in order."""
    if len(row) != len(COLUMNS):
        raise ValueError(f"an audit row has {len(COLUMNS)} columns, not {len(row)}")
    # Built in sorted key order, so no sort is needed per record (same bytes
    # as json.dumps(..., sort_keys=True)); the writer hashes every record.
    ordered = dict(zip(_SORTED_NAMES, _sorted_values(row), strict=True))
    return _ENCODER.encode(ordered).encode("utf-8")


def chain_hash(previous: bytes, row: Sequence[Any]) -> bytes:
    """The hash of ``row`` chained to the hash of the record before it."""
    return hashlib.sha256(previous + canonical_bytes(row)).digest()


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The newest record: what an outside system keeps to anchor the log.

    An empty log's head is ``seq`` 0 with the genesis hash.
    """

    seq: int
    hash: str | None

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash}


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What ``verify_chain`` found: ``broken_at`` is the first record that
    was changed, removed or moved (None if the chain holds)."""

    records: int
    head: AuditHead
    broken_at: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify_chain(rows: Iterable[Sequence[Any]], counter: int = 0,
                 anchors: Mapping[int, str] | None = None) -> ChainReport:
    """Check rows (``COLUMNS`` then ``hash``, in ``seq`` order) from the first.

    ``counter`` is the highest ``seq`` the log ever handed out (SQLite's
    AUTOINCREMENT counter): records removed from the end leave it above the
    last row. ``seq`` values are consecutive from 1 in a log nobody edited,
    so a gap names a removed record even where the hashes around it agree.
    ``anchors`` are heads kept elsewhere (``seq`` -> hash): a log rewritten
    with fresh hashes from some record on still verifies on its own, but no
    longer has the hash that was kept for a later record.
    """
    anchors = anchors or {}
    previous, last_seq, records = GENESIS, 0, 0
    for row in rows:
        seq, stored = row[0], row[len(COLUMNS)]
        head = AuditHead(last_seq, previous.hex())
        if not isinstance(seq, int) or seq <= last_seq:
            return ChainReport(records, head, last_seq + 1,
                               f"record after {last_seq} has a bad seq {seq!r}")
        if seq != last_seq + 1:
            return ChainReport(records, head, last_seq + 1,
                               f"record {last_seq + 1} is missing (removed)")
        if not isinstance(stored, str) or not stored:
            return ChainReport(records, head, seq,
                               f"record {seq} has no hash (written or altered outside passbridge)")
        try:
            expected = chain_hash(previous, row[: len(COLUMNS)])
        except (TypeError, ValueError):
            expected = b""
        if stored != expected.hex():
            return ChainReport(records, head, seq,
                               f"record {seq} does not match its hash "
                               "(changed, or moved from elsewhere in the log)")
        if seq in anchors and anchors[seq] != stored:
            return ChainReport(records, head, seq,
                               f"record {seq} is not the one anchored (the log was rewritten "
                               "at or before it)")
        previous, last_seq, records = expected, seq, records + 1
    head = AuditHead(last_seq, previous.hex())
    beyond = [seq for seq in anchors if seq > last_seq]
    if beyond:
        return ChainReport(records, head, min(beyond),
                           f"record {min(beyond)} was anchored but the log ends at {last_seq}")
    if counter > last_seq:
        return ChainReport(records, head, last_seq + 1,
                           f"records {last_seq + 1} to {counter} are missing "
                           "(removed from the end of the log)")
    return ChainReport(records, head)
