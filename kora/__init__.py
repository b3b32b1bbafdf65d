"""Kora: an open-source wallet core for mobile-money neobanks."""

__version__ = "0.1.0"
