"""The reconciliation service's adapters: its own database (tables, SQL store, migrations) and
the encryption of stored reports."""
