"""`kora relay`, `kora worker` and `kora events ...`: the event pipeline's processes and the
operators' tools (replay, dead letters). Registered on the `kora` group by kora/cli.py."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import click


def _run(work: Callable[[Any], Awaitable[Any]], *, service: str | None = None) -> Any:
    """Run ``work`` with a Kora; a long-running ``service`` (relay, worker) also traces and
    ships its logs as the environment says (kora.observability.telemetry)."""
    from kora.bootstrap import Kora
    from kora.observability import TelemetrySettings, configure_logging, configure_telemetry
    from kora.platform.settings import Settings

    settings = Settings.from_env()
    if service is not None:
        configure_telemetry(TelemetrySettings.from_env(service))
    else:
        configure_logging(level=settings.log_level, json=settings.log_json)

    async def runner() -> Any:
        kora = Kora(settings)
        try:
            return await work(kora)
        finally:
            await kora.aclose()

    return asyncio.run(runner())


def _until_signalled(job: Callable[[Any, asyncio.Event], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    async def work(kora: Any) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await job(kora, stop)

    return work


def _metrics_server(kora: Any, port: int | None, host: str) -> None:
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, addr=host, registry=kora.registry)


def register(main: click.Group) -> None:
    metrics_port_option = click.option("--metrics-port", type=int, default=None, help="serve /metrics on this port")
    metrics_host_option = click.option(
        "--metrics-host", default="127.0.0.1", show_default=True, help="address of /metrics (0.0.0.0 in a container)"
    )

    @main.command()
    @metrics_port_option
    @metrics_host_option
    def relay(metrics_port: int | None, metrics_host: str) -> None:
        """Publish the outbox to the bus until SIGTERM (several may run at once)."""

        async def job(kora: Any, stop: asyncio.Event) -> None:
            _metrics_server(kora, metrics_port, metrics_host)
            await kora.events.run_relay(stop)

        _run(_until_signalled(job), service="kora-relay")

    @main.command()
    @click.option("--consumer", "consumers", multiple=True, help="run only this consumer (repeatable)")
    @metrics_port_option
    @metrics_host_option
    def worker(consumers: tuple[str, ...], metrics_port: int | None, metrics_host: str) -> None:
        """Run the event consumers (all by default) until SIGTERM."""

        async def job(kora: Any, stop: asyncio.Event) -> None:
            _metrics_server(kora, metrics_port, metrics_host)
            await kora.events.run_workers(stop, list(consumers) or None)

        _run(_until_signalled(job), service="kora-worker")

    @main.group()
    def events() -> None:
        """The event pipeline: status, bus set-up, replay and dead letters."""

    @events.command("setup")
    def events_setup() -> None:
        """Create or update the JetStream streams (needs the NATS admin user)."""

        async def work(kora: Any) -> Any:
            bus = await kora.events.bus()
            ensure = getattr(bus, "ensure_stream", None)
            if ensure is None:
                return {"bus": kora.settings.events_bus, "streams": "nothing to set up"}
            await ensure()
            return {"bus": kora.settings.events_bus, "streams": "ready"}

        click.echo(json.dumps(_run(work)))

    @events.command("status")
    def events_status() -> None:
        """Outbox backlog and oldest unpublished age, consumer lag, open dead letters."""

        async def work(kora: Any) -> Any:
            backlog, age = await (await kora.events.relay()).refresh_backlog()
            lags = await kora.events.refresh_gauges()
            letters = await kora.events.dead_letters.open_counts()
            return {
                "outbox_backlog": backlog,
                "outbox_oldest_age_seconds": round(age, 3),
                "consumer_lag": lags,
                "dead_letters_open": letters,
            }

        click.echo(json.dumps(_run(work), indent=2))

    @events.command("replay")
    @click.option("--consumer", required=True, help="the one consumer to re-deliver to")
    @click.option("--from-seq", type=int, default=None, help="from this stream sequence")
    @click.option("--since", default=None, help="from this time (ISO 8601, UTC if no offset)")
    @click.option("--actor", required=True, help="who asks (recorded in the audit trail)")
    def events_replay(consumer: str, from_seq: int | None, since: str | None, actor: str) -> None:
        """Re-deliver the stream to one consumer; what it already applied is not applied again."""
        if (from_seq is None) == (since is None):
            raise click.UsageError("give exactly one of --from-seq and --since")
        start = None if since is None else _parse_time(since)

        async def work(kora: Any) -> Any:
            return await kora.events.replay(consumer, from_seq=from_seq, since=start, actor=actor)

        click.echo(json.dumps(_run(work), indent=2))

    @events.command("bench-relay")
    @click.option("--events", "count", default=50_000, show_default=True, type=int)
    @click.option("--batch", default=1000, show_default=True, type=int)
    def events_bench_relay(count: int, batch: int) -> None:
        """Benchmark: write COUNT signed events to the outbox, then time one relay publishing them
        to the configured bus (run on an empty outbox; `kora events setup` first for NATS)."""
        from kora.bench_events import run_relay_bench

        async def work(kora: Any) -> Any:
            return await run_relay_bench(kora, events=count, batch_size=batch)

        click.echo(_run(work).render())

    @events.command("lag-report")
    @click.option("--metrics-url", required=True, help="a worker's /metrics (kora worker --metrics-port)")
    def events_lag_report(metrics_url: str) -> None:
        """End-to-end lag (commit → consumer effect) percentiles per consumer, from the worker's
        kora_event_end_to_end_seconds histogram."""
        from kora.bench_events import lag_report

        for consumer, q in sorted(asyncio.run(lag_report(metrics_url)).items()):
            click.echo(
                f"{consumer}: {q['count']:.0f} events, end-to-end lag p50 {q['p50'] * 1000:.0f} ms, "
                f"p95 {q['p95'] * 1000:.0f} ms, p99 {q['p99'] * 1000:.0f} ms"
            )

    @events.command("compat")
    @click.argument("old", type=click.Path(exists=True, dir_okay=False))
    @click.argument("new", type=click.Path(exists=True, dir_okay=False))
    def events_compat(old: str, new: str) -> None:
        """Compare two versions of an event's JSON Schema: print every change and who it breaks
        (readers, producers); exit 1 if any change breaks (ADR 0020)."""
        from kora.events.compat import compare

        changes = compare(_json_file(old), _json_file(new))
        for change in changes:
            click.echo(str(change))
        if not changes:
            click.echo("no change")
        sys.exit(1 if any(c.breaking for c in changes) else 0)

    @events.command("schema-digest")
    @click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
    def events_schema_digest(files: tuple[str, ...]) -> None:
        """Print each schema's lock digest (what kora/events/RELEASED.json records)."""
        from kora.events.compat import schema_digest

        for name in files:
            click.echo(f"{schema_digest(_json_file(name))}  {name}")

    @events.group("dlq")
    def dlq() -> None:
        """Dead letters: list, re-drive, drop (audited)."""

    @dlq.command("list")
    @click.option("--consumer", default=None)
    @click.option("--status", type=click.Choice(["open", "retried", "dropped", "all"]), default="open")
    @click.option("--limit", type=int, default=100, show_default=True)
    def dlq_list(consumer: str | None, status: str, limit: int) -> None:
        """The dead letters, oldest first."""

        async def work(kora: Any) -> Any:
            found = await kora.events.dead_letters.find(
                consumer=consumer, status=None if status == "all" else status, limit=limit
            )
            return [letter.view() for letter in found]

        click.echo(json.dumps(_run(work), indent=2))

    @dlq.command("retry")
    @click.argument("letter_id", type=click.UUID)
    @click.option("--actor", required=True, help="who asks (recorded in the audit trail)")
    def dlq_retry(letter_id: uuid.UUID, actor: str) -> None:
        """Run a dead letter through its consumer again; exit 1 if it fails again."""

        async def work(kora: Any) -> Any:
            letter, outcome = await kora.events.retry_dead_letter(letter_id, actor=actor)
            return {
                "id": str(letter.id),
                "consumer": letter.consumer,
                "outcome": outcome.word,
                "detail": outcome.detail,
            }

        result = _run(work)
        click.echo(json.dumps(result, indent=2))
        sys.exit(0 if result["outcome"] in ("applied", "duplicate") else 1)

    @dlq.command("drop")
    @click.argument("letter_id", type=click.UUID)
    @click.option("--actor", required=True, help="who asks (recorded in the audit trail)")
    @click.option("--reason", required=True, help="why it is dropped (recorded in the audit trail)")
    def dlq_drop(letter_id: uuid.UUID, actor: str, reason: str) -> None:
        """Close a dead letter without applying it."""

        async def work(kora: Any) -> Any:
            letter = await kora.events.drop_dead_letter(letter_id, actor=actor, reason=reason)
            return {"id": str(letter.id), "consumer": letter.consumer, "status": "dropped"}

        click.echo(json.dumps(_run(work), indent=2))


def _json_file(path: str) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _parse_time(value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}") from exc
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
