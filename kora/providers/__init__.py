"""The providers module's public interface: the provider port and the configured gateways, and
the card acquirer port."""

from kora.providers.card import (
    ACQUIRER_UNAVAILABLE,
    AUTHORIZATION_CAPTURED,
    AUTHORIZATION_DECLINED,
    AUTHORIZATION_EXPIRED,
    AUTHORIZATION_VOIDED,
    AuthorizationState,
    AuthorizationStatus,
    CardAcquirer,
    CardAuthorizationRequest,
    CardOutcome,
    CardResult,
    Chargeback,
    StaticCardAcquirers,
)
from kora.providers.ports import (
    STATUS_UNREACHABLE,
    ProviderGateway,
    ProviderOperation,
    ProviderOutcome,
    ProviderRequest,
    ProviderResult,
)
from kora.providers.registry import NoProviderAvailable, ProviderAvailability, StaticProviderRegistry

__all__ = [
    "ACQUIRER_UNAVAILABLE",
    "AUTHORIZATION_CAPTURED",
    "AUTHORIZATION_DECLINED",
    "AUTHORIZATION_EXPIRED",
    "AUTHORIZATION_VOIDED",
    "STATUS_UNREACHABLE",
    "AuthorizationState",
    "AuthorizationStatus",
    "CardAcquirer",
    "CardAuthorizationRequest",
    "CardOutcome",
    "CardResult",
    "Chargeback",
    "NoProviderAvailable",
    "ProviderAvailability",
    "ProviderGateway",
    "ProviderOperation",
    "ProviderOutcome",
    "ProviderRequest",
    "ProviderResult",
    "StaticCardAcquirers",
    "StaticProviderRegistry",
]
