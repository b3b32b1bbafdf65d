"""Kora's HTTP API as the console uses it: sign in, refresh, sign out, read the KPIs.

Tokens live in a `Session` the app keeps in Streamlit's session state (never on disk, never in
a URL). The access token is refreshed shortly before it expires, and once more if the API
refuses it anyway; when the refresh token is refused too, the session is over.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

ALLOWED_ROLES = frozenset({"leadership", "admin"})
REFRESH_MARGIN_SECONDS = 30


class ConsoleError(Exception):
    """Something the person should read (a refused sign-in, an API that does not answer)."""


class SessionExpired(ConsoleError):
    """The API no longer accepts this session: sign in again."""


@dataclass
class Session:
    access_token: str
    refresh_token: str
    device_id: str
    expires_at: float
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def allowed(self) -> bool:
        return bool(self.roles & ALLOWED_ROLES)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}", "X-Device-ID": self.device_id}


def token_roles(access_token: str) -> frozenset[str]:
    """The roles an access token carries. Read without verifying the signature: it only decides
    what the console shows; every API call is checked by the API itself."""
    try:
        payload = access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return frozenset(str(role) for role in claims.get("roles", ()))
    except (IndexError, ValueError, AttributeError):
        return frozenset()


class KoraClient:
    def __init__(self, base_url: str, *, timeout: float = 15.0) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def sign_in(self, phone_number: str, password: str) -> Session:
        """A new session for this device (a console tab). Raises ConsoleError with a message
        that says nothing about whether the number exists."""
        device_id = "console-" + uuid.uuid4().hex[:16]
        response = self._post(
            "/v1/auth/login", {"phone_number": phone_number, "password": password, "device_id": device_id}
        )
        if response.status_code in (401, 422):
            raise ConsoleError("Sign-in refused: check the phone number and the password.")
        if response.status_code == 429:
            raise ConsoleError("Too many attempts: wait a few minutes before trying again.")
        if response.status_code != 200:
            raise ConsoleError(f"Kora answered {response.status_code} to the sign-in.")
        return self._session(response.json(), device_id)

    def refresh(self, session: Session) -> Session:
        response = self._post(
            "/v1/auth/refresh", {"refresh_token": session.refresh_token, "device_id": session.device_id}
        )
        if response.status_code != 200:
            raise SessionExpired("Your session has ended: sign in again.")
        return self._session(response.json(), session.device_id)

    def sign_out(self, session: Session) -> None:
        # The tokens are dropped from the session either way; they expire soon.
        with contextlib.suppress(httpx.HTTPError):
            self._http.post("/v1/auth/logout", headers=session.headers())

    def kpis(self, session: Session, date_from: str, date_to: str) -> tuple[dict[str, Any], Session]:
        """The KPI report, and the session (refreshed if it had to be)."""
        if time.time() >= session.expires_at - REFRESH_MARGIN_SECONDS:
            session = self.refresh(session)
        params = {"from": date_from, "to": date_to}
        response = self._get("/v1/admin/kpis", params, session)
        if response.status_code == 401:
            session = self.refresh(session)
            response = self._get("/v1/admin/kpis", params, session)
        if response.status_code == 401:
            raise SessionExpired("Your session has ended: sign in again.")
        if response.status_code == 403:
            raise ConsoleError("Your role may not read the KPIs (leadership or admin only).")
        if response.status_code != 200:
            raise ConsoleError(_problem(response))
        report: dict[str, Any] = response.json()
        return report, session

    def _session(self, body: dict[str, Any], device_id: str) -> Session:
        return Session(
            access_token=str(body["access_token"]),
            refresh_token=str(body["refresh_token"]),
            device_id=device_id,
            expires_at=time.time() + int(body.get("expires_in", 300)),
            roles=token_roles(str(body["access_token"])),
        )

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return self._http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise ConsoleError(f"Kora's API does not answer ({type(exc).__name__}).") from None

    def _get(self, path: str, params: dict[str, str], session: Session) -> httpx.Response:
        try:
            return self._http.get(path, params=params, headers=session.headers())
        except httpx.HTTPError as exc:
            raise ConsoleError(f"Kora's API does not answer ({type(exc).__name__}).") from None


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"Kora answered {response.status_code}: {body.get('detail') or body.get('title')}"
    except ValueError:
        return f"Kora answered {response.status_code}."
