"""The single-use record of token ids (``token_replayed`` in rules.md section 4)."""

from __future__ import annotations

import heapq
import threading
from enum import Enum

from passbridge.core.tokens.limits import DEFAULT_LEEWAY


class ReplayVerdict(Enum):
    FRESH = "fresh"
    REPLAYED = "replayed"
    FULL = "full"


# As module constants for the hot path: on Python 3.11 reading an enum member
# as a class attribute costs ten times a global lookup.
_FRESH, _USED, _FULL = ReplayVerdict.FRESH, ReplayVerdict.REPLAYED, ReplayVerdict.FULL


class ReplayCache:
    """Single-use record of token ids, kept until each one's expiry plus leeway.

    Pruning is lazy and amortised: ids are grouped by their exact expiry
    time (a bridge's tokens mostly share whole-second expiries), a heap
    orders the groups, and a group goes as a whole once its expiry plus
    leeway has passed. Recording an id is a set insert and a list append;
    only the first id of a new expiry touches the heap. When full of
    unexpired entries it refuses new tokens rather than forgetting one still
    in its lifetime, which would let that token be replayed. Thread-safe:
    NFC and BLE adapters verify from their own threads.
    """

    def __init__(self, max_entries: int = 1_000_000, *, leeway: float = DEFAULT_LEEWAY) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._seen: set[str] = set()
        self._by_expiry: dict[float, list[str]] = {}
        self._heap: list[float] = []  # the keys of _by_expiry
        # The soonest expiry plus leeway: before then there is nothing to prune.
        self._next_prune = float("inf")
        self._lock = threading.Lock()
        self.leeway = leeway

    @property
    def leeway(self) -> float:
        return self._leeway

    @leeway.setter
    def leeway(self, seconds: float) -> None:
        with self._lock:
            self._leeway = seconds
            self._next_prune = self._heap[0] + seconds if self._heap else float("inf")

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def _prune(self, now: float) -> None:
        heap, leeway = self._heap, self._leeway
        while heap and heap[0] + leeway < now:
            self._seen.difference_update(self._by_expiry.pop(heapq.heappop(heap)))
        self._next_prune = heap[0] + leeway if heap else float("inf")

    def check_and_add(self, key: str, expires_at: float, now: float) -> ReplayVerdict:
        """Record ``key`` as used until ``expires_at`` (epoch seconds), atomically."""
        with self._lock:
            if now > self._next_prune:
                self._prune(now)
            seen = self._seen
            if key in seen:
                return _USED
            if len(seen) >= self.max_entries:
                return _FULL
            seen.add(key)
            group = self._by_expiry.get(expires_at)
            if group is not None:
                group.append(key)
                return _FRESH
            self._by_expiry[expires_at] = [key]
            heapq.heappush(self._heap, expires_at)
            self._next_prune = min(self._next_prune, expires_at + self._leeway)
            return _FRESH
