"""Verification of the audit chains: fed records in (chain, position) order, it recomputes each
HMAC and checks the prev_hash links and that positions are gapless. It keeps the state of the
current chain only, so a table of any size can be streamed through it.

What the chain alone cannot see is the removal of a chain's last records (the remaining prefix
is still a valid chain). Periodically exporting `chain_heads` to an external append-only store
(a log pipeline, a WORM bucket) and passing the last export as `anchors` closes that gap.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from kora.audit.domain.record import GENESIS_HASH, AuditEntry, compute_hash

HASH_MISMATCH = "hash mismatch (record altered)"
PREV_HASH_MISMATCH = "prev_hash mismatch"
POSITION_GAP = "position gap (record removed)"
CHAIN_OUT_OF_RANGE = "chain out of range"
TRUNCATED = "chain truncated (anchored record missing)"
ANCHOR_MISMATCH = "anchor mismatch (chain rewritten)"

ChainHeads = Mapping[int, tuple[int, str]]
"""chain -> (last position, last hash), as returned by `chain_heads`."""


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """The first place a chain stops being trustworthy."""

    chain: int
    position: int
    record_id: UUID | None
    reason: str
    occurred_at: datetime | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "chain": self.chain,
            "position": self.position,
            "record_id": str(self.record_id) if self.record_id else None,
            "reason": self.reason,
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            "detail": self.detail,
        }

    def _order(self) -> tuple[bool, datetime | None, int, int]:
        return (self.occurred_at is None, self.occurred_at, self.chain, self.position)


@dataclass(frozen=True)
class AuditReport:
    """Outcome of a verification. `broken` holds the first broken link of each broken chain;
    `first_broken` is the earliest of them in time (then by chain)."""

    records_checked: int
    chains_checked: int
    broken: tuple[BrokenLink, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.broken

    @property
    def first_broken(self) -> BrokenLink | None:
        return min(self.broken, key=BrokenLink._order) if self.broken else None

    def as_dict(self) -> dict[str, object]:
        first = self.first_broken
        return {
            "ok": self.ok,
            "records_checked": self.records_checked,
            "chains_checked": self.chains_checked,
            "first_broken": first.as_dict() if first else None,
            "broken_chains": [link.as_dict() for link in self.broken],
        }


@dataclass
class _ChainState:
    chain: int
    next_position: int = 1
    prev_hash: str = GENESIS_HASH
    broken: bool = False


@dataclass
class ChainVerifier:
    """Feed every record ordered by (chain, position), then call `finish()`.

    key: the HMAC key. chains: the configured chain count, if known; records in a chain outside
    0..chains-1 are reported. anchors: chain heads exported earlier; a chain that no longer
    reaches its anchored position, or holds another hash there, is reported.
    """

    key: bytes
    chains: int | None = None
    anchors: ChainHeads = field(default_factory=dict)
    _records: int = field(default=0, init=False)
    _seen: set[int] = field(default_factory=set, init=False)
    _broken: dict[int, BrokenLink] = field(default_factory=dict, init=False)
    _current: _ChainState | None = field(default=None, init=False)

    def feed(self, entry: AuditEntry) -> None:
        state = self._current
        if state is None or entry.chain != state.chain:
            if state is not None and entry.chain < state.chain:
                raise ValueError("records must be fed ordered by (chain, position)")
            self._end_chain()
            state = self._current = _ChainState(entry.chain)
            self._seen.add(entry.chain)
            if self.chains is not None and not 0 <= entry.chain < self.chains:
                self._report(entry, CHAIN_OUT_OF_RANGE, f"expected a chain in 0..{self.chains - 1}")
        self._records += 1
        self._check(state, entry)
        state.next_position = entry.position + 1
        state.prev_hash = entry.hash

    def _check(self, state: _ChainState, entry: AuditEntry) -> None:
        if entry.position != state.next_position:
            self._report(entry, POSITION_GAP, f"expected position {state.next_position}, found {entry.position}")
        elif not hmac.compare_digest(compute_hash(self.key, entry), entry.hash):
            self._report(entry, HASH_MISMATCH)
        elif entry.prev_hash != state.prev_hash:
            self._report(entry, PREV_HASH_MISMATCH, "prev_hash is not the hash of the previous record")
        anchor = self.anchors.get(entry.chain)
        if anchor is not None and entry.position == anchor[0] and entry.hash != anchor[1]:
            self._report(entry, ANCHOR_MISMATCH, "the record at the anchored position has another hash")

    def _report(self, entry: AuditEntry, reason: str, detail: str = "") -> None:
        if entry.chain not in self._broken:
            self._broken[entry.chain] = BrokenLink(
                entry.chain, entry.position, entry.id, reason, entry.occurred_at, detail
            )

    def _end_chain(self) -> None:
        state = self._current
        if state is None:
            return
        anchor = self.anchors.get(state.chain)
        last_position = state.next_position - 1
        if anchor is not None and last_position < anchor[0] and state.chain not in self._broken:
            self._broken[state.chain] = BrokenLink(
                state.chain, anchor[0], None, TRUNCATED, None, f"chain ends at position {last_position}"
            )

    def finish(self) -> AuditReport:
        self._end_chain()
        self._current = None
        for chain, (position, _hash) in self.anchors.items():
            if chain not in self._seen and position > 0 and chain not in self._broken:
                self._broken[chain] = BrokenLink(chain, position, None, TRUNCATED, None, "chain is empty")
        checked = set(self._seen)
        if self.chains is not None:
            checked.update(range(self.chains))
        return AuditReport(
            records_checked=self._records,
            chains_checked=len(checked),
            broken=tuple(self._broken[chain] for chain in sorted(self._broken)),
        )
