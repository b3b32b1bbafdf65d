"""The providers module's public interface: the provider port and the configured gateways."""

from kora.providers.ports import (
    STATUS_UNREACHABLE,
    ProviderGateway,
    ProviderOperation,
    ProviderOutcome,
    ProviderRequest,
    ProviderResult,
)
from kora.providers.registry import StaticProviderRegistry

__all__ = [
    "STATUS_UNREACHABLE",
    "ProviderGateway",
    "ProviderOperation",
    "ProviderOutcome",
    "ProviderRequest",
    "ProviderResult",
    "StaticProviderRegistry",
]
