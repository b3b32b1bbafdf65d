"""Adapters of the risk module: the policy file and the in-memory activity store."""
