"""The labelled synthetic dataset and its evaluation through `assess` (issue #6)."""
