"""Count the SQL statements and transactions one payment costs the database (docs/capacity.md).

Runs the real API in process (ASGI, no socket) on a fresh PostgreSQL database brought to head
by the migrations, with the event pipeline out of process as deployed
(KORA_EVENTS_IN_PROCESS=false), and counts, with SQLAlchemy's cursor events on the API's engine,
every statement the database receives while each request is handled: authentication, anti-replay
nonce, idempotency, risk, ledger, payment, outbox. Then the outbox relay publishes the events
those payments wrote, and the statements per published event are counted the same way.

Requests are sent one at a time, so group commit never batches two transfers: the counts are the
per-payment ceiling (under load, group commit shares a transaction between transfers).

    .venv/bin/python scripts/sql_per_payment.py [--repeat 20] [--size-sample 500]
        [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, run from anywhere


class StatementCounter:
    """Statements (by verb) and transactions the engine sends while ``counting`` is on."""

    def __init__(self) -> None:
        self.counting = False
        self.verbs: Counter[str] = Counter()
        self.commits = 0

    def attach(self, sync_engine: sa.engine.Engine) -> None:
        event.listen(sync_engine, "before_cursor_execute", self._statement)
        event.listen(sync_engine, "commit", self._commit)

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.counting:
            self.verbs[statement.lstrip().split(None, 1)[0].upper()] += 1

    def _commit(self, _conn: Any) -> None:
        if self.counting:
            self.commits += 1

    async def measure(self, action: Callable[[], Awaitable[Any]]) -> tuple[int, int, Counter[str]]:
        self.verbs, self.commits, self.counting = Counter(), 0, True
        try:
            await action()
        finally:
            self.counting = False
        return sum(self.verbs.values()), self.commits, self.verbs


async def run(postgres: str, repeat: int, size_sample: int) -> None:
    import httpx
    from asgi_lifespan import LifespanManager

    from kora.bootstrap import Kora
    from kora.http.app import create_app
    from kora.observability import configure_logging
    from kora.platform.migrate import upgrade
    from tests.support.api import Api, test_settings

    configure_logging(level="WARNING", json=False)  # the request lines would drown the table
    name = f"kora_sqlcount_{uuid.uuid4().hex[:8]}"
    from kora.platform.db import create_engine

    async def admin_sql(sql: str) -> None:
        engine = create_engine(f"{postgres}/postgres", pool_size=1)
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(sa.text(sql))
        finally:
            await engine.dispose()

    await admin_sql(f'CREATE DATABASE "{name}"')
    url = f"{postgres}/{name}"
    try:
        await asyncio.to_thread(upgrade, url)
        with tempfile.TemporaryDirectory() as tmp:
            settings = test_settings(url, Path(tmp), KORA_LOG_LEVEL="WARNING", KORA_SWEEP_INTERVAL_SECONDS="3600")
            kora = Kora(settings)
            counter = StatementCounter()
            counter.attach(kora.engine.sync_engine)
            app = create_app(kora)
            async with LifespanManager(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://kora.test") as client:
                    api = Api(client)
                    api.kora = kora  # type: ignore[attr-defined]  (what Api.admin uses, as tests set it)
                    await report(api, kora, counter, repeat, size_sample)
            await kora.aclose()
    finally:
        await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def report(api: Any, kora: Any, counter: StatementCounter, repeat: int, size_sample: int) -> None:
    alice = await api.customer(fund=10_000_000)
    bob = await api.customer()
    merchant = await api.merchant()

    async def expect(response: Awaitable[Any], status: int = 201) -> None:
        answer = await response
        assert answer.status_code == status, answer.text

    actions: dict[str, Callable[[], Awaitable[Any]]] = {
        "P2P transfer (POST /v1/transfers)": lambda: expect(
            api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=100)
        ),
        "cash-in (POST /v1/cash-ins)": lambda: api.cash_in(alice, 1_000),
        "cash-out (POST /v1/cash-outs)": lambda: expect(api.cash_out(alice, 500)),
        "merchant payment (POST /v1/merchant-payments)": lambda: expect(
            api.pay_merchant(alice, merchant.merchant_id, 1_000)
        ),
        "balance read (GET /v1/wallet)": lambda: api.balance(alice),
    }
    print(f"PostgreSQL, one request at a time, {repeat} of each (median [min-max]):")
    print(f"{'request':48} {'statements':>14} {'commits':>8} {'events':>7}   statements by verb (median request)")
    for label, action in actions.items():
        before = await _scalar(kora, "SELECT count(*) FROM event_outbox")
        results = [await counter.measure(action) for _ in range(repeat)]
        events = (await _scalar(kora, "SELECT count(*) FROM event_outbox") - before) / repeat
        statements = [r[0] for r in results]
        commits = [r[1] for r in results]
        middle = sorted(results, key=lambda r: r[0])[len(results) // 2][2]
        verbs = ", ".join(f"{verb} {count}" for verb, count in middle.most_common())
        print(
            f"{label:48} {statistics.median(statements):>4.0f} [{min(statements)}-{max(statements)}]"
            f"{statistics.median(commits):>8.0f} {events:>7.1f}   {verbs}"
        )

    pending = await _scalar(kora, "SELECT count(*) FROM event_outbox WHERE published_at IS NULL")
    relay = await kora.events.relay()
    published = 0

    async def drain() -> None:
        nonlocal published
        while (count := await relay.publish_once()) > 0:
            published += count

    total, commits, verbs = await counter.measure(drain)
    # Storage: the database's growth over many transfers (one transfer is smaller than a page).
    size_before = await _scalar(kora, "SELECT pg_database_size(current_database())")
    for _ in range(size_sample):
        await expect(api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=1))
    size_after = await _scalar(kora, "SELECT pg_database_size(current_database())")
    print(
        f"\nstorage: {size_sample} P2P transfers grew the database by {(size_after - size_before) / 1024:.0f} KiB:"
        f" {(size_after - size_before) / size_sample:.0f} bytes per transfer (tables, indexes, outbox; before"
        " the outbox and nonce purges)"
    )
    print(
        f"\noutbox relay: {published} events published (of {pending} pending) with {total} statements"
        f" and {commits} commits: {total / max(published, 1):.2f} statements per event"
        f" ({', '.join(f'{v} {c}' for v, c in verbs.most_common())})"
    )


async def _scalar(kora: Any, sql: str) -> int:
    async with kora.engine.connect() as conn:
        return int((await conn.execute(sa.text(sql))).scalar_one())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--size-sample", type=int, default=500, help="transfers to measure storage per transfer")
    args = parser.parse_args()
    asyncio.run(run(args.postgres.rstrip("/"), args.repeat, args.size_sample))


if __name__ == "__main__":
    main()
