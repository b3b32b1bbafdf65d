"""`kora recon bench`: a nightly batch end to end, timed, and checked against what was injected.

It writes a synthetic settlement report of N lines in a provider's dialect (mostly lines that
match, plus a known mix of discrepancies) and Kora's side of the same day in ``recon_payments``
(bulk-loaded before the clock starts, as the `recon` consumer would have folded it from
events). Then it times three phases, as a match run does them:

- import: `ReportImports.import_report` (parse, validate, encrypt, store lines and quarantine);
- match: the run's transaction locks the report, loads its lines and the provider's payments
  and matches them (the steps of `run_match`, timed one by one);
- persist: the results replace the report's previous ones, and the transaction commits.

It reports lines/s, seconds per phase, the process's RSS high-water mark (and the tracemalloc
peak of the batch with ``trace_memory``, which slows Python down), and compares the outcome
counts, the reasons and what the database holds with the injected mix: a run that does not
find exactly what was injected fails, so the benchmark is a correctness check too.
"""

from __future__ import annotations

import io
import random
import resource
import secrets
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.kernel import FixedClock, currency
from kora.reconciliation.adapters.bulk import insert_rows
from kora.reconciliation.adapters.crypto import AesGcmReportCipher
from kora.reconciliation.adapters.sql import SqlReportStore
from kora.reconciliation.adapters.tables import recon_payments, recon_quarantine, recon_report_lines, recon_results
from kora.reconciliation.adapters.view_store import (
    lock_report,
    payments_for_report,
    replace_results,
    report_lines,
    report_span,
)
from kora.reconciliation.dialects import load_dialect
from kora.reconciliation.domain.dialect import AmountFormat, Dialect, SignConvention
from kora.reconciliation.domain.matching import Outcome, match
from kora.reconciliation.domain.report import LineStatus, LineType
from kora.reconciliation.domain.rules import FeeRule, MatchRules
from kora.reconciliation.service.importing import ReportImports
from kora.reconciliation.service.match_run import expected_window

DAY_START = datetime(2026, 3, 10, tzinfo=UTC)
AS_OF = DAY_START + timedelta(days=3)
RULES = MatchRules(fees={LineType.CASH_IN: FeeRule(bps=100), LineType.CASH_OUT: FeeRule(bps=150, min_fee=50)})
CURRENCY = "XOF"
_CHUNK = 20_000

# Per 1,000 report lines: what is injected besides lines that match. A duplicate is one line
# listed twice (two lines); the last three kinds are Kora payments the report does not list.
MIX_PER_MILLE: dict[str, int] = {
    "amount": 10,  # Kora holds another amount
    "fee": 10,  # the provider charged another fee than its schedule says
    "status": 10,  # the provider says succeeded, Kora says failed
    "duplicate": 5,  # the same line twice
    "late": 5,  # Kora has no final status yet (the line came before the core's update)
    "unknown": 5,  # a line for a payment Kora has never heard of
    "quarantined": 2,  # an unreadable line (bad amount)
    "missing_due": 5,  # captured by Kora, not listed, settlement overdue
    "missing_not_due": 3,  # captured by Kora, not listed, not yet due
    "failed_unlisted": 5,  # failed at Kora and not listed: nothing to say
}
_LINE_KINDS = ("amount", "fee", "status", "duplicate", "late", "unknown", "quarantined")
_KORA_ONLY = ("missing_due", "missing_not_due", "failed_unlisted")


@dataclass(frozen=True, slots=True)
class Expected:
    """What the injected mix must produce."""

    lines: int  # report lines, header excluded
    kinds: dict[str, int]

    @property
    def parsed(self) -> int:
        return self.lines - self.kinds["quarantined"]

    @property
    def outcomes(self) -> dict[str, int]:
        k = self.kinds
        return {
            Outcome.MATCHED.value: k["matched"] + k["duplicate"],
            Outcome.MISMATCH.value: k["amount"] + k["fee"] + k["status"] + k["duplicate"],
            Outcome.MISSING_INTERNAL.value: k["late"] + k["unknown"],
            Outcome.MISSING_PROVIDER.value: k["missing_due"],
            Outcome.PENDING.value: k["missing_not_due"],
        }

    @property
    def reasons(self) -> dict[str, int]:
        k = self.kinds
        return {"amount": k["amount"], "fee": k["fee"], "status": k["status"], "duplicate": k["duplicate"]}


def plan(lines: int) -> Expected:
    """How many of each kind a report of ``lines`` lines gets (at least one of each from 1,000)."""
    kinds = {kind: lines * rate // 1000 for kind, rate in MIX_PER_MILLE.items()}
    used = sum(kinds[k] for k in _LINE_KINDS) + kinds["duplicate"]  # a duplicate is two lines
    if used > lines:
        raise ValueError("too few lines for the mix")
    kinds["matched"] = lines - used
    return Expected(lines, kinds)


@dataclass
class _Writer:
    """Renders lines in a dialect's own words (signed amounts, its date format and time zone)."""

    dialect: Dialect
    status_word: dict[LineStatus, str] = field(init=False)
    type_word: dict[LineType, str] = field(init=False)
    exponent: int = field(init=False)

    def __post_init__(self) -> None:
        d = self.dialect
        if d.sign is not SignConvention.SIGNED or "status" not in d.columns or "currency" not in d.columns:
            raise ValueError(f"the bench writes signed reports with status and currency columns, not {d.name}'s")
        if any(len(columns) != 1 for columns in d.columns.values()):
            raise ValueError(f"the bench writes one column per field, not {d.name}'s")
        self.status_word, self.type_word = {}, {}
        for word, status in d.statuses.items():
            self.status_word.setdefault(status, word)
        for word, meaning in d.types.items():
            self.type_word.setdefault(meaning.type, word)
        missing = {LineType.CASH_IN, LineType.CASH_OUT} - set(self.type_word)
        if missing or LineStatus.SUCCEEDED not in self.status_word:
            raise ValueError(f"the {d.name} dialect has no words for cash-ins, cash-outs and successes")
        self.exponent = currency(CURRENCY).exponent
        self._order = [next(f for f, cols in d.columns.items() if cols == (column,)) for column in d.header]

    def amount(self, minor: int) -> str:
        if self.dialect.amount_format is AmountFormat.MINOR:
            return str(minor)
        return f"{Decimal(minor).scaleb(-self.exponent):.{self.dialect.decimals}f}"

    def line(
        self, *, txn_id: str, reference: str, at: datetime, line_type: LineType, amount: int, fee: int, bad: bool
    ) -> str:
        """A succeeded line; ``bad`` writes an amount no dialect reads (the line is quarantined)."""
        signed = amount if line_type is LineType.CASH_IN else -amount
        values = {
            "provider_txn_id": txn_id,
            "our_reference": reference,
            "occurred_at": at.astimezone(self.dialect.zone).strftime(self.dialect.date_formats[0]),
            "status": self.status_word[LineStatus.SUCCEEDED],
            "type": self.type_word[line_type],
            "amount": "12,5x" if bad else self.amount(signed),
            "fee": self.amount(fee),
            "net": self.amount(signed - fee),
            "currency": CURRENCY,
        }
        return self.dialect.separator.join(values[f] for f in self._order)


_PAYMENT_COLUMNS = (
    "payment_id", "provider", "provider_ref", "our_reference", "type", "status", "amount", "fee",
    "currency", "captured_amount", "captured_at", "settlement_due", "sequence", "updated_at",
)  # fmt: skip


def generate(provider: str, expected: Expected, *, seed: int) -> Iterator[tuple[str | None, tuple[Any, ...] | None]]:
    """(report line or None, recon_payments row or None) pairs, the report's lines in time order."""
    writer = _Writer(load_dialect(provider))
    rng = random.Random(seed)  # noqa: S311 (synthetic data, reproducible by seed)
    kinds = [kind for kind in ("matched", *_LINE_KINDS) for _ in range(expected.kinds[kind])]
    kinds += [kind for kind in _KORA_ONLY for _ in range(expected.kinds[kind])]
    rng.shuffle(kinds)
    step = timedelta(seconds=80_000 / max(1, len(kinds)))
    prefix = f"{provider[0].upper()}{seed % 1000:03d}"
    for number, kind in enumerate(kinds):
        at = DAY_START + timedelta(minutes=30) + step * number
        payment_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        txn_id = f"{prefix}{1_000_000_000 + number}"
        line_type = LineType.CASH_IN if number % 3 else LineType.CASH_OUT
        payment_type = "cash_in" if line_type is LineType.CASH_IN else "cash_out"
        amount = rng.randrange(100, 500_000)
        rule = RULES.fees[line_type]
        fee = rule.fee_for(amount) + (1 if kind == "fee" else 0)
        text = writer.line(
            txn_id=txn_id,
            reference=payment_id,
            at=at,
            line_type=line_type,
            amount=amount,
            fee=fee,
            bad=kind == "quarantined",
        )
        status = "SETTLED" if number % 7 == 0 else "CAPTURED"
        provider_ref: str | None = txn_id
        due = at + timedelta(days=1)
        kora_amount = amount + 100 if kind == "amount" else amount
        if kind == "status" or kind == "failed_unlisted":
            status = "FAILED"
        elif kind == "late":
            status, provider_ref = "INITIATED", None
        elif kind == "missing_not_due":
            due = AS_OF + timedelta(days=2)
        captured = None if status in ("INITIATED", "FAILED") else at
        row = (
            payment_id, provider, provider_ref, payment_id, payment_type, status, kora_amount, 0, CURRENCY,
            None, captured, due if captured else None, 3, at,
        )  # fmt: skip
        if kind in _KORA_ONLY:
            yield None, row
        elif kind in ("unknown", "quarantined"):
            yield text, None
        elif kind == "duplicate":
            yield text, row
            yield text, None
        else:
            yield text, row


@dataclass
class BenchResult:
    provider: str
    lines: int
    seconds: dict[str, float]
    window: tuple[datetime, datetime]  # when the timed batch started and ended (UTC)
    rss_before_mib: float
    rss_import_mib: float  # the high-water mark once the import is done
    rss_peak_mib: float
    tracemalloc_peak_mib: float | None
    outcomes: dict[str, int]
    reasons: dict[str, int]
    stored: dict[str, int]
    expected: Expected
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> dict[str, Any]:
        total = self.seconds["total"]
        return {
            "provider": self.provider,
            "lines": self.lines,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "batch_started_at": self.window[0].isoformat(),
            "batch_ended_at": self.window[1].isoformat(),
            "lines_per_second": round(self.lines / total) if total else None,
            "memory_mib": {
                "rss_before_batch": round(self.rss_before_mib, 1),
                "rss_high_water_after_import": round(self.rss_import_mib, 1),
                "rss_high_water": round(self.rss_peak_mib, 1),
                "tracemalloc_peak": None if self.tracemalloc_peak_mib is None else round(self.tracemalloc_peak_mib, 1),
            },
            "outcomes": self.outcomes,
            "reasons": self.reasons,
            "stored": self.stored,
            "injected": self.expected.kinds,
            "ok": self.ok,
            "problems": self.problems,
        }


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def prepare(engine: AsyncEngine, provider: str, expected: Expected, *, seed: int) -> bytes:
    """Kora's side loaded into recon_payments; returns the report's bytes."""
    header = load_dialect(provider).separator.join(load_dialect(provider).header)
    report = io.BytesIO()
    report.write(header.encode() + b"\r\n")
    pending_lines: list[str] = []
    pending_rows: list[tuple[Any, ...]] = []
    async with engine.begin() as conn:
        for text, row in generate(provider, expected, seed=seed):
            if text is not None:
                pending_lines.append(text)
            if row is not None:
                pending_rows.append(row)
            if len(pending_lines) >= _CHUNK:
                report.write(("\r\n".join(pending_lines) + "\r\n").encode())
                pending_lines.clear()
            if len(pending_rows) >= _CHUNK:
                await insert_rows(conn, recon_payments, _PAYMENT_COLUMNS, pending_rows)
                pending_rows.clear()
        if pending_lines:
            report.write(("\r\n".join(pending_lines) + "\r\n").encode())
        await insert_rows(conn, recon_payments, _PAYMENT_COLUMNS, pending_rows)
    if engine.dialect.name == "postgresql":  # as autovacuum would have, after a day of events
        async with engine.begin() as conn:
            await conn.execute(sa.text("ANALYZE recon_payments"))
    return report.getvalue()


async def run_bench(
    engine: AsyncEngine,
    lines: int,
    *,
    provider: str = "momo",
    seed: int = 1,
    trace_memory: bool = False,
    on_start: Callable[[datetime], None] | None = None,
) -> BenchResult:
    """Load the synthetic batch's Kora side, then import, match and persist its report, timed.
    ``on_start`` is called when the timed batch starts (a script may start a load beside it)."""
    expected = plan(lines)
    data = await prepare(engine, provider, expected, seed=seed)
    cipher = AesGcmReportCipher([secrets.token_bytes(32)])  # a throwaway key: nothing is kept
    clock = FixedClock(AS_OF)
    imports = ReportImports(SqlReportStore(engine), cipher, clock)
    rss_before = _rss_mib()
    if trace_memory:
        tracemalloc.start()
    seconds: dict[str, float] = {}
    window = [datetime.now(UTC)]
    if on_start is not None:
        on_start(window[0])
    started = time.perf_counter()
    imported = await imports.import_report(provider, data, filename=f"{provider}-bench.csv", actor="bench")
    del data
    seconds["import"] = time.perf_counter() - started
    rss_import = _rss_mib()
    async with engine.begin() as conn:
        step = time.perf_counter()
        found = await lock_report(conn, imported.report_id)
        assert found == provider
        report = await report_lines(conn, imported.report_id)
        seconds["match_load_lines"] = time.perf_counter() - step
        step = time.perf_counter()
        captured_from, captured_to = expected_window(*await report_span(conn, imported.report_id), rules=RULES)
        internal = await payments_for_report(
            conn, provider, imported.report_id, captured_from=captured_from, captured_to=captured_to
        )
        seconds["match_load_payments"] = time.perf_counter() - step
        step = time.perf_counter()
        results = match(report, internal, rules=RULES, as_of=AS_OF)
        seconds["match_compute"] = time.perf_counter() - step
        seconds["match"] = seconds["match_load_lines"] + seconds["match_load_payments"] + seconds["match_compute"]
        step = time.perf_counter()
        await replace_results(conn, imported.report_id, results, at=clock.now())
    seconds["persist"] = time.perf_counter() - step
    seconds["total"] = time.perf_counter() - started
    window.append(datetime.now(UTC))
    traced = None
    if trace_memory:
        traced = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    outcomes = Counter(result.outcome.value for result in results)
    reasons = Counter(reason.value for result in results for reason in result.reasons)
    del report, internal, results
    stored = await _stored(engine, imported.report_id)
    result = BenchResult(
        provider=provider,
        lines=lines,
        seconds=seconds,
        window=(window[0], window[1]),
        rss_before_mib=rss_before,
        rss_import_mib=rss_import,
        rss_peak_mib=_rss_mib(),
        tracemalloc_peak_mib=traced,
        outcomes={o.value: outcomes.get(o.value, 0) for o in Outcome},
        reasons=dict(sorted(reasons.items())),
        stored=stored,
        expected=expected,
        problems=[],
    )
    result.problems.extend(_check(result, imported.lines, imported.quarantined))
    return result


async def _stored(engine: AsyncEngine, report_id: uuid.UUID) -> dict[str, int]:
    def count(table: sa.Table, *where: Any) -> sa.Select[Any]:
        return sa.select(sa.func.count()).select_from(table).where(table.c.report_id == report_id, *where)

    async with engine.connect() as conn:
        stored = {
            "lines": (await conn.execute(count(recon_report_lines))).scalar_one(),
            "quarantined": (await conn.execute(count(recon_quarantine))).scalar_one(),
            "results": (await conn.execute(count(recon_results))).scalar_one(),
            "results_for_lines": (
                await conn.execute(count(recon_results, recon_results.c.line_number.is_not(None)))
            ).scalar_one(),
            "results_without_amount": (
                await conn.execute(count(recon_results, recon_results.c.amount.is_(None)))
            ).scalar_one(),
        }
        by_outcome = await conn.execute(
            sa.select(recon_results.c.outcome, sa.func.count())
            .where(recon_results.c.report_id == report_id)
            .group_by(recon_results.c.outcome)
        )
        for outcome, n in by_outcome:
            stored[f"results_{outcome}"] = n
    return stored


def _check(result: BenchResult, parsed: int, quarantined: int) -> list[str]:
    expected = result.expected
    problems: list[str] = []

    def same(what: str, got: object, want: object) -> None:
        if got != want:
            problems.append(f"{what}: {got} != expected {want}")

    same("parsed lines", parsed, expected.parsed)
    same("quarantined lines", quarantined, expected.kinds["quarantined"])
    same("outcomes", result.outcomes, expected.outcomes)
    same("reasons", result.reasons, {k: v for k, v in sorted(expected.reasons.items()) if v})
    same("stored lines", result.stored["lines"], expected.parsed)
    same("stored quarantine", result.stored["quarantined"], expected.kinds["quarantined"])
    same("stored results", result.stored["results"], sum(expected.outcomes.values()))
    same("stored results of lines", result.stored["results_for_lines"], expected.parsed)
    same("stored results without amount", result.stored["results_without_amount"], 0)
    stored_outcomes = {o: result.stored.get(f"results_{o}", 0) for o in expected.outcomes}
    same("stored outcomes", stored_outcomes, expected.outcomes)
    return problems


ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


@contextmanager
def fresh_postgres_database(admin_url: str = ADMIN_URL) -> Iterator[str]:
    """A new, empty PostgreSQL database next to ``admin_url``'s, dropped afterwards; yields its URL."""
    import asyncio

    from kora.platform.db import create_engine

    name = f"kora_recon_bench_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        engine = create_engine(admin_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(sa.text(sql))
        finally:
            await engine.dispose()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
