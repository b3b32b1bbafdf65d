"""The reconciliation domain: dialects, report parsing and matching. Pure: the standard
library and ``kora.kernel`` only, no I/O."""
