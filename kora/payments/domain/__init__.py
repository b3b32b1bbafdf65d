"""The payments module's pure domain: the payment lifecycle and its rules."""
