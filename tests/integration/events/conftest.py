"""The NATS fixtures (nats_support.py) for every events test."""

from tests.integration.events.nats_support import secured_nats, shared_nats

__all__ = ["secured_nats", "shared_nats"]
