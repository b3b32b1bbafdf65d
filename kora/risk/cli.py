"""`kora risk ...`: the risk policy, the labelled dataset and its evaluation.
Registered on the `kora` group by kora/cli.py through `register(main)`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from kora.risk.adapters.policy_file import load_policy
from kora.risk.domain.policy import Policy, PolicyError
from kora.risk.policies import DEFAULT_POLICY_PATH

_POLICY_OPTION = click.option(
    "--policy",
    "policy_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="a policy file (default: the shipped kora/risk/policies/default.yaml)",
)


def _policy(path: Path | None) -> Policy:
    try:
        return load_policy(path or DEFAULT_POLICY_PATH)
    except PolicyError as exc:
        raise click.ClickException(f"invalid policy: {exc}") from exc


@click.group("risk")
def risk() -> None:
    """Risk engine: policy, synthetic labelled dataset, evaluation, store benchmark."""


@risk.command("check-policy")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False)
def check_policy(path: Path | None) -> None:
    """Validate a policy file (default: the shipped policy) and print its version."""
    policy = _policy(path)
    click.echo(f"policy {policy.version} is valid ({policy.currency}, tiers: {', '.join(policy.tiers)})")


@risk.command("dataset")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--customers", type=int, default=200, show_default=True)
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@_POLICY_OPTION
def dataset_command(seed: int, customers: int, out: Path, policy_path: Path | None) -> None:
    """Write a labelled synthetic dataset (JSON lines) of normal customers and injected fraud."""
    from kora.risk.evaluation.dataset import generate

    dataset = generate(seed=seed, customers=customers, policy=_policy(policy_path))
    dataset.write(out)
    labelled = sum(1 for p in dataset.payments if p.label)
    click.echo(f"{len(dataset.payments)} payments ({labelled} labelled as fraud) written to {out}")


@risk.command("evaluate")
@click.option("--dataset", "dataset_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--seed", type=int, default=1, show_default=True, help="generate the dataset (when no --dataset)")
@click.option("--customers", type=int, default=200, show_default=True)
@_POLICY_OPTION
@click.option("--json", "as_json", is_flag=True, help="print the figures as JSON")
def evaluate_command(
    dataset_path: Path | None, seed: int, customers: int, policy_path: Path | None, as_json: bool
) -> None:
    """Replay a labelled dataset through the risk assessment; print precision and recall per
    pattern and the false-positive rate on normal traffic. Exits 1 if a pattern is missed."""
    from kora.risk.evaluation.dataset import Dataset, generate
    from kora.risk.evaluation.replay import evaluate

    policy = _policy(policy_path)
    if dataset_path is not None:
        dataset = Dataset.read(dataset_path)
        source = str(dataset_path)
    else:
        dataset = generate(seed=seed, customers=customers, policy=policy)
        source = f"--seed {seed} --customers {customers}"
    result = evaluate(dataset, policy)
    if as_json:
        click.echo(json.dumps({"dataset": source, **result.as_dict()}, indent=2))
    else:
        click.echo(f"dataset: {source}")
        click.echo(result.render())
    sys.exit(0 if result.all_caught else 1)


@risk.command("bench")
@click.option("--database-url", envvar="KORA_DATABASE_URL", required=True, help="a scratch database")
@click.option("--payments", type=click.IntRange(min=1), default=5000, show_default=True)
@click.option("--concurrency", type=click.IntRange(min=1, max=64), default=8, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--migrate", is_flag=True, help="bring the database to the head revision first")
@click.option(
    "--in-transaction", is_flag=True, help="time only the call, inside a transaction already open (a payment's)"
)
@_POLICY_OPTION
def bench_command(
    database_url: str,
    payments: int,
    concurrency: int,
    seed: int,
    migrate: bool,
    in_transaction: bool,
    policy_path: Path | None,
) -> None:
    """Time `assess_and_reserve` (the SQL store's atomic check-and-reserve) on the labelled
    dataset's payments: p50/p95/p99 per call, throughput, outcomes. Writes rows prefixed with a
    run id: use a scratch database."""
    import asyncio

    from kora.observability import configure_logging
    from kora.platform.migrate import upgrade
    from kora.risk.evaluation.bench import run_bench

    configure_logging(level="INFO", json=False)  # as in production: the per-call debug line is off
    policy = _policy(policy_path)
    if migrate:
        upgrade(database_url)
    result = asyncio.run(
        run_bench(
            database_url, policy, payments=payments, concurrency=concurrency, seed=seed, in_transaction=in_transaction
        )
    )
    click.echo(result.render())


def register(main: click.Group) -> None:
    main.add_command(risk)
