"""Identifiers: UUIDv7, so ids sort by creation time (good B-tree locality, natural cursors)."""

from __future__ import annotations

import uuid

import uuid6


def new_id() -> uuid.UUID:
    return uuid.UUID(int=uuid6.uuid7().int)
