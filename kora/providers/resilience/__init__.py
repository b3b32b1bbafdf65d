"""The resilience toolkit provider adapters run their calls through: classified errors,
timeouts, safe retries, a circuit breaker and a bulkhead per provider, composed by
:class:`ProviderGuard`."""

from kora.providers.resilience.breaker import ProviderBreaker
from kora.providers.resilience.bulkhead import Bulkhead
from kora.providers.resilience.errors import (
    BREAKER_OPEN,
    BULKHEAD_FULL,
    DEFAULT_NOT_ACCEPTED_STATUSES,
    ProviderDeclined,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    classify_http_status,
    classify_httpx_error,
    is_provider_fault,
)
from kora.providers.resilience.guard import ProviderGuard, ProviderGuards, outcome_word
from kora.providers.resilience.metrics import NoopProviderMetrics, ProviderMetrics
from kora.providers.resilience.policies import (
    BreakerPolicy,
    BulkheadPolicy,
    ProviderPolicy,
    RetryPolicy,
    TimeoutPolicy,
)
from kora.providers.resilience.retry import full_jitter_delay, is_retryable, retry_call
from kora.providers.resilience.timeouts import call_with_timeout

__all__ = [
    "BREAKER_OPEN",
    "BULKHEAD_FULL",
    "DEFAULT_NOT_ACCEPTED_STATUSES",
    "BreakerPolicy",
    "Bulkhead",
    "BulkheadPolicy",
    "NoopProviderMetrics",
    "ProviderBreaker",
    "ProviderDeclined",
    "ProviderError",
    "ProviderGuard",
    "ProviderGuards",
    "ProviderMetrics",
    "ProviderPolicy",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RetryPolicy",
    "TimeoutPolicy",
    "call_with_timeout",
    "classify_http_status",
    "classify_httpx_error",
    "full_jitter_delay",
    "is_provider_fault",
    "is_retryable",
    "outcome_word",
    "retry_call",
]
