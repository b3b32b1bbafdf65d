"""The reconciliation service's HTTP API. Never imports kora.http."""
