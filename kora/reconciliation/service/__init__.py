"""The reconciliation service's use cases (importing and reading settlement reports) and its settings."""
