"""The bundled deny-list of common passwords (data/common-passwords.txt)."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def load_common_passwords() -> frozenset[str]:
    """Lower-cased entries of the bundled list; lines starting with '#' are comments."""
    text = resources.files("kora.identity.adapters").joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))
