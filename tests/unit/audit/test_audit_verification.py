"""Chain verification: each kind of tampering is reported at the first broken link."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from kora.audit.adapters.memory import IN_MEMORY_KEY, InMemoryAuditTrail
from kora.audit.domain import (
    ANCHOR_MISMATCH,
    CHAIN_OUT_OF_RANGE,
    HASH_MISMATCH,
    POSITION_GAP,
    PREV_HASH_MISMATCH,
    TRUNCATED,
    AuditEntry,
    AuditReport,
    ChainVerifier,
    compute_hash,
)
from kora.audit.domain.record import DEFAULT_CHAINS
from kora.kernel import FixedClock

KEY = IN_MEMORY_KEY


async def build(subjects: list[str], per_subject: int = 5, chains: int = 4) -> list[AuditEntry]:
    clock = FixedClock()
    trail = InMemoryAuditTrail(clock=clock, chains=chains)
    for i in range(per_subject):
        for subject in subjects:
            clock.advance(timedelta(seconds=1))
            await trail.record(
                actor="system",
                action="payment.step.done",
                subject=subject,
                correlation_id=f"c{i}",
                details={"step": i},
            )
    return sorted(trail.records, key=lambda e: (e.chain, e.position))


def verify(entries: list[AuditEntry], **options: object) -> AuditReport:
    verifier = ChainVerifier(key=KEY, **options)  # type: ignore[arg-type]
    for entry in entries:
        verifier.feed(entry)
    return verifier.finish()


def reseal(entry: AuditEntry, **changes: object) -> AuditEntry:
    """What someone holding the key could do: change a record and recompute its hash."""
    changed = replace(entry, **changes)  # type: ignore[arg-type]
    return replace(changed, hash=compute_hash(KEY, changed))


def in_chain(entries: list[AuditEntry], chain: int) -> list[AuditEntry]:
    return [e for e in entries if e.chain == chain]


async def test_an_untouched_trail_verifies() -> None:
    entries = await build(["payment:a", "payment:b", "payment:c"])
    report = verify(entries)
    assert report.ok
    assert report.first_broken is None
    assert report.records_checked == 15
    assert report.as_dict() == {
        "ok": True,
        "records_checked": 15,
        "chains_checked": len({e.chain for e in entries}),
        "first_broken": None,
        "broken_chains": [],
    }


async def test_an_altered_record_is_the_first_broken_link_of_its_chain() -> None:
    entries = await build(["payment:a"], per_subject=6)
    target = entries[2]
    entries[2] = replace(target, details='{"step":99}')
    report = verify(entries)
    assert not report.ok
    broken = report.first_broken
    assert broken is not None
    assert (broken.chain, broken.position, broken.record_id, broken.reason) == (
        target.chain,
        3,
        target.id,
        HASH_MISMATCH,
    )
    assert report.records_checked == 6


async def test_a_record_with_a_wrong_key_hash_is_altered() -> None:
    entries = await build(["payment:a"], per_subject=3)
    entries[1] = replace(entries[1], hash=compute_hash(b"x" * 32, entries[1]))
    assert verify(entries).first_broken.reason == HASH_MISMATCH  # type: ignore[union-attr]


async def test_a_resealed_record_pointing_elsewhere_is_a_prev_hash_mismatch() -> None:
    entries = await build(["payment:a"], per_subject=3)
    entries[1] = reseal(entries[1], prev_hash="f" * 64)
    broken = verify(entries).first_broken
    assert broken is not None
    assert (broken.position, broken.reason) == (2, PREV_HASH_MISMATCH)


async def test_a_removed_record_is_a_position_gap_at_the_next_record() -> None:
    entries = await build(["payment:a"], per_subject=5)
    after_gap = entries[3]
    del entries[2]
    broken = verify(entries).first_broken
    assert broken is not None
    assert (broken.position, broken.record_id, broken.reason) == (4, after_gap.id, POSITION_GAP)
    assert broken.detail == "expected position 3, found 4"


async def test_a_removed_first_record_is_a_position_gap() -> None:
    entries = await build(["payment:a"], per_subject=3)
    broken = verify(entries[1:]).first_broken
    assert broken is not None
    assert (broken.position, broken.reason) == (2, POSITION_GAP)


async def test_only_the_first_break_of_each_chain_and_the_earliest_overall_are_reported() -> None:
    entries = await build(["payment:a", "payment:b"], per_subject=5)
    chain_a = in_chain(entries, entries[0].chain)
    chain_b = [e for e in entries if e.chain != chain_a[0].chain]
    assert chain_b, "the two subjects must land in different chains"
    # Chain A broken late (position 4), then again at 5; chain B broken early (position 2).
    chain_a[3] = replace(chain_a[3], details="{}")
    chain_a[4] = replace(chain_a[4], details="{}")
    chain_b[1] = replace(chain_b[1], details="{}")
    report = verify(sorted(chain_a + chain_b, key=lambda e: (e.chain, e.position)))
    assert [(b.chain, b.position) for b in report.broken] == sorted([(chain_a[0].chain, 4), (chain_b[0].chain, 2)])
    assert report.first_broken is not None
    assert (report.first_broken.chain, report.first_broken.position) == (chain_b[0].chain, 2)
    as_dict = report.as_dict()
    assert as_dict["ok"] is False
    assert as_dict["first_broken"] == {
        "chain": chain_b[0].chain,
        "position": 2,
        "record_id": str(chain_b[1].id),
        "reason": HASH_MISMATCH,
        "occurred_at": chain_b[1].occurred_at.isoformat(),
        "detail": "",
    }


async def test_a_deleted_tail_is_invisible_to_the_chain_alone_but_not_to_anchors() -> None:
    entries = await build(["payment:a"], per_subject=5)
    chain = entries[0].chain
    anchors = {chain: (5, entries[4].hash)}
    assert verify(entries, anchors=anchors).ok
    truncated = entries[:3]
    assert verify(truncated).ok
    broken = verify(truncated, anchors=anchors).first_broken
    assert broken is not None
    assert (broken.chain, broken.position, broken.record_id, broken.reason) == (chain, 5, None, TRUNCATED)
    assert broken.detail == "chain ends at position 3"


async def test_an_anchored_chain_that_disappeared_is_truncated() -> None:
    report = verify([], anchors={2: (7, "a" * 64)})
    assert report.first_broken is not None
    assert (report.first_broken.chain, report.first_broken.reason) == (2, TRUNCATED)


async def test_a_chain_rewritten_with_the_key_is_caught_by_its_anchor() -> None:
    entries = await build(["payment:a"], per_subject=3)
    anchors = {entries[0].chain: (3, entries[2].hash)}
    rewritten = [reseal(entries[0], details='{"step":42}')]
    for entry in entries[1:]:
        rewritten.append(reseal(entry, prev_hash=rewritten[-1].hash))
    assert verify(rewritten).ok
    broken = verify(rewritten, anchors=anchors).first_broken
    assert broken is not None
    assert (broken.position, broken.reason) == (3, ANCHOR_MISMATCH)


async def test_with_a_chain_count_empty_chains_count_and_strays_are_reported() -> None:
    entries = await build(["payment:a"], per_subject=2, chains=DEFAULT_CHAINS)
    assert verify(entries, chains=DEFAULT_CHAINS).chains_checked == DEFAULT_CHAINS
    stray = [reseal(e, chain=40) for e in entries]
    broken = verify(stray, chains=DEFAULT_CHAINS).first_broken
    assert broken is not None
    assert (broken.chain, broken.reason) == (40, CHAIN_OUT_OF_RANGE)


async def test_records_out_of_chain_order_are_a_programming_error() -> None:
    entries = await build(["payment:a", "payment:b"], per_subject=1)
    assert entries[0].chain != entries[1].chain
    with pytest.raises(ValueError, match="ordered by"):
        verify(list(reversed(entries)))
