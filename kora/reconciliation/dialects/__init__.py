"""The built-in provider dialects, shipped as JSON data files next to this module."""

from __future__ import annotations

import json
import re
from importlib import resources

from kora.reconciliation.domain.dialect import Dialect, DialectError, dialect_from_mapping

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def available_dialects() -> tuple[str, ...]:
    """The names of the shipped dialects (``momo``, ``wave``, ``card``...)."""
    files = resources.files(__package__)
    return tuple(sorted(item.name[: -len(".json")] for item in files.iterdir() if item.name.endswith(".json")))


def load_dialect(name: str) -> Dialect:
    """The shipped dialect called ``name``; DialectError when there is none or it is invalid."""
    if not _NAME.match(name):
        raise DialectError(f"invalid dialect name {name!r}")
    resource = resources.files(__package__).joinpath(f"{name}.json")
    if not resource.is_file():
        raise DialectError(f"no dialect named {name!r}")
    try:
        data = json.loads(resource.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DialectError(f"dialect {name!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DialectError(f"dialect {name!r} must be a JSON object")
    dialect = dialect_from_mapping(data)
    if dialect.name != name:
        raise DialectError(f"dialect file {name}.json names itself {dialect.name!r}")
    return dialect
