"""`kora events compat` and `kora events schema-digest`: what a reviewer runs on a schema change."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from kora.cli import main

SCHEMAS = Path(__file__).resolve().parents[3] / "kora" / "events" / "schemas"
RELEASED = json.loads((SCHEMAS.parent / "RELEASED.json").read_text(encoding="utf-8"))


def test_a_breaking_change_exits_1_and_names_who_it_breaks() -> None:
    result = CliRunner().invoke(
        main,
        [
            "events",
            "compat",
            str(SCHEMAS / "payment.status_changed.v1.json"),
            str(SCHEMAS / "payment.status_changed.v2.json"),
        ],
    )
    assert result.exit_code == 1
    assert "BREAKS readers" in result.output
    assert "BREAKS producers" in result.output


def test_the_same_schema_is_no_change() -> None:
    v1 = str(SCHEMAS / "payment.status_changed.v1.json")
    result = CliRunner().invoke(main, ["events", "compat", v1, v1])
    assert result.exit_code == 0
    assert result.output.strip() == "no change"


def test_the_digest_is_what_the_lock_records() -> None:
    path = SCHEMAS / "identity.user_registered.v1.json"
    result = CliRunner().invoke(main, ["events", "schema-digest", str(path)])
    assert result.exit_code == 0
    assert result.output.split()[0] == RELEASED["contracts"]["identity.user_registered.v1"]
