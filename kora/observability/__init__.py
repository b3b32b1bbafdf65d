"""Observability: correlation ids, structured scrubbed logs, traces and metrics."""

from kora.observability.correlation import (
    CORRELATION_HEADER,
    correlation_scope,
    get_correlation_id,
    is_valid_correlation_id,
    new_correlation_id,
)
from kora.observability.scrubbing import is_sensitive_key, scrub, scrub_value

__all__ = [
    "CORRELATION_HEADER",
    "correlation_scope",
    "get_correlation_id",
    "is_sensitive_key",
    "is_valid_correlation_id",
    "new_correlation_id",
    "scrub",
    "scrub_value",
]
