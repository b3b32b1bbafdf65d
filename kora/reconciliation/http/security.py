"""PLACEHOLDER (recon-review branch): the real module — the core's access tokens verified by
the reconciliation service — is written on the `recon-api` branch and replaces this file.

It keeps only the contract the cases router is written against: ``current_recon_principal`` is a
FastAPI dependency returning an object with ``.user_id: str`` and ``.roles: frozenset[str]``.
Here it refuses every request (401), so nothing is reachable without the real verifier; tests
override the dependency."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request


@dataclass(frozen=True, slots=True)
class ReconPrincipal:
    user_id: str
    roles: frozenset[str]


async def current_recon_principal(request: Request) -> ReconPrincipal:
    raise HTTPException(status_code=401, detail="authentication is not configured")
