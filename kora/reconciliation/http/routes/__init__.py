"""Routes of the reconciliation API."""
