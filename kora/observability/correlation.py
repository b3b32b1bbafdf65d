"""Correlation IDs: one id per unit of work (an HTTP request, a consumed event, a job run),
carried in a context variable so every log line, audit record and outgoing call made while
handling it can name it without threading it through every function signature."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

CORRELATION_HEADER = "X-Correlation-ID"

# A caller-supplied id ends up in logs, spans and response headers: accept only a short,
# boring alphabet so it can carry neither markup, nor whitespace, nor a log-injection payload.
_VALID_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}")

_correlation_id: ContextVar[str | None] = ContextVar("kora_correlation_id", default=None)


def get_correlation_id() -> str | None:
    """The correlation id of the unit of work running in this context, if any."""
    return _correlation_id.get()


def new_correlation_id() -> str:
    """A fresh correlation id (32 lowercase hex characters)."""
    return uuid.uuid4().hex


def is_valid_correlation_id(value: object) -> bool:
    """True for 8 to 64 characters of ``[A-Za-z0-9._:-]``, nothing else — and not all digits:
    a bare run of digits could be a phone number, and correlation ids are stored and logged."""
    return (
        isinstance(value, str)
        and _VALID_CORRELATION_ID.fullmatch(value) is not None
        and not value.replace(".", "").replace("-", "").isdigit()
    )


@contextmanager
def correlation_scope(value: str | None = None) -> Iterator[str]:
    """Run the block under a correlation id: ``value`` when it is valid, a new one otherwise.

    Yields the id in force; the previous id (or none) is restored on exit.
    """
    correlation_id = value if value is not None and is_valid_correlation_id(value) else new_correlation_id()
    token = _correlation_id.set(correlation_id)
    try:
        yield correlation_id
    finally:
        _correlation_id.reset(token)


def set_correlation_id(value: str) -> Token[str | None]:
    """Set the id without a ``with`` block (the ASGI middleware's hot path); pass the token
    to :func:`reset_correlation_id` when the unit of work ends."""
    return _correlation_id.set(value)


def reset_correlation_id(token: Token[str | None]) -> None:
    _correlation_id.reset(token)
