"""The in-memory audit trail other modules' unit tests record through."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kora.audit import AuditRecorder, InMemoryAuditTrail
from kora.audit.domain import GENESIS_HASH, chain_for
from kora.kernel import FixedClock


async def test_it_is_an_audit_recorder_sealing_each_record_in_its_subject_chain() -> None:
    clock = FixedClock()
    trail = InMemoryAuditTrail(clock=clock, chains=4)
    recorder: AuditRecorder = trail
    await recorder.record(actor="user:u1", action="payment.p2p.initiated", subject="payment:p1", correlation_id="c1")
    clock.advance(timedelta(seconds=1))
    await recorder.record(
        actor="user:u1",
        action="payment.p2p.captured",
        subject="payment:p1",
        correlation_id="c1",
        details={"amount": 5000, "currency": "XOF"},
    )
    first, second = trail.records
    assert trail.actions() == ["payment.p2p.initiated", "payment.p2p.captured"]
    assert first.chain == second.chain == chain_for("payment:p1", 4)
    assert (first.position, first.prev_hash) == (1, GENESIS_HASH)
    assert (second.position, second.prev_hash) == (2, first.hash)
    assert second.occurred_at == first.occurred_at + timedelta(seconds=1)
    assert first.outcome == "success"
    assert second.details_dict() == {"amount": 5000, "currency": "XOF"}
    assert trail.verify().ok


async def test_each_chain_has_its_own_positions() -> None:
    trail = InMemoryAuditTrail(chains=16)
    subjects = [f"payment:p{i}" for i in range(20)]
    for subject in subjects * 3:
        await trail.record(actor="system", action="payment.checked", subject=subject, correlation_id=None)
    for chain in {e.chain for e in trail.records}:
        positions = [e.position for e in trail.records if e.chain == chain]
        assert positions == list(range(1, len(positions) + 1))
    report = trail.verify()
    assert report.ok
    assert report.records_checked == 60
    assert report.chains_checked == 16


async def test_pii_is_refused_and_nothing_is_recorded() -> None:
    trail = InMemoryAuditTrail()
    with pytest.raises(ValueError, match="phone"):
        await trail.record(
            actor="user:u1", action="auth.login.failed", subject="user:221771234567", correlation_id=None
        )
    with pytest.raises(ValueError, match="personal data"):
        await trail.record(
            actor="user:u1",
            action="auth.login.failed",
            subject="user:u1",
            correlation_id=None,
            details={"email": "x"},
        )
    assert trail.records == []


def test_a_short_key_or_bad_chain_count_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        InMemoryAuditTrail(key=b"short")
    with pytest.raises(ValueError, match="chains"):
        InMemoryAuditTrail(chains=0)
