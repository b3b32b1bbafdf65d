"""Each provider's match rules (its fee schedule, fallback window, grace period) as data: JSON
files next to this module, one per provider, or in `KORA_RECON_RULES_DIR` when set (a
deployment's own contracts, read instead of the shipped ones)."""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from loguru import logger

from kora.reconciliation.domain.rules import MatchRules, RulesError, rules_from_mapping

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def load_rules(provider: str) -> MatchRules:
    """The match rules of ``provider``; RulesError when its file is invalid. A provider with no
    file gets the defaults with its fees unchecked (logged: a fee gap would go unseen)."""
    return _load(provider, os.environ.get("KORA_RECON_RULES_DIR") or None)


@lru_cache(maxsize=64)
def _load(provider: str, directory: str | None) -> MatchRules:
    if not _NAME.match(provider):
        raise RulesError(f"invalid provider name {provider!r}")
    text = _read(provider, directory)
    if text is None:
        logger.warning("no match rules for this provider: its fees are not checked", provider=provider)
        return MatchRules()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RulesError(f"rules of {provider!r} are not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("provider") != provider:
        raise RulesError(f"the rules file of {provider!r} must be a JSON object naming it as its provider")
    return rules_from_mapping(data)


def _read(provider: str, directory: str | None) -> str | None:
    if directory is not None:
        path = Path(directory) / f"{provider}.json"
        return path.read_text(encoding="utf-8") if path.is_file() else None
    resource = resources.files(__package__).joinpath(f"{provider}.json")
    return resource.read_text(encoding="utf-8") if resource.is_file() else None
