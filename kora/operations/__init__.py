"""Operations: the controls on-call uses for controlled degradation (issue #7).

Pause an operation (`cash-in`, `cash-out`, `p2p`, `merchant-payment`) or take a provider out of
routing, with a reason, audited, exported as metrics (`kora_operation_paused{operation}`,
`kora_provider_disabled{provider}`), stored in the core's database and cached in each process
(see `service.py` for the cache). Reached through this interface: the HTTP layer guards the
payment routes with `OperationalControls.ensure_open`, the provider registry asks
`disabled_providers()`, the admin API and `kora ops` change them.
"""

from kora.operations.domain import (
    DEFAULT_RETRY_AFTER_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    PROVIDER_OPERATION,
    REFUSED_NO_PROVIDER,
    REFUSED_PAUSED,
    REFUSED_PROVIDER_DISABLED,
    Control,
    ControlChange,
    ControlError,
    ControlKind,
    ControlSnapshot,
    InvalidControl,
    Operation,
    OperationPaused,
    ProviderDisabled,
    UnknownProviderControl,
    overview,
)
from kora.operations.ports import ControlMetrics, ControlStore, ControlsUnitOfWork
from kora.operations.service import DEFAULT_TTL_SECONDS, ControlRequest, OperationalControls

__all__ = [
    "DEFAULT_RETRY_AFTER_SECONDS",
    "DEFAULT_TTL_SECONDS",
    "MAX_RETRY_AFTER_SECONDS",
    "PROVIDER_OPERATION",
    "REFUSED_NO_PROVIDER",
    "REFUSED_PAUSED",
    "REFUSED_PROVIDER_DISABLED",
    "Control",
    "ControlChange",
    "ControlError",
    "ControlKind",
    "ControlMetrics",
    "ControlRequest",
    "ControlSnapshot",
    "ControlStore",
    "ControlsUnitOfWork",
    "InvalidControl",
    "Operation",
    "OperationPaused",
    "OperationalControls",
    "ProviderDisabled",
    "UnknownProviderControl",
    "overview",
]
