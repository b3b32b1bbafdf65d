"""`FilePolicySource`: the policy read from a YAML (or JSON) file, reloaded when its content
changes, keeping the last good policy when a new version is invalid."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import yaml
from loguru import logger

from kora.risk.domain.policy import Policy, PolicyError, parse_policy


def load_policy(path: Path) -> Policy:
    """The policy in the file at `path`, or PolicyError (unreadable, not YAML, or invalid)."""
    return _parse(path.read_bytes(), path)


def _parse(content: bytes, path: Path) -> Policy:
    try:
        document = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path.name}: not valid YAML ({exc.__class__.__name__})") from exc
    return parse_policy(document)


class FilePolicySource:
    """The current policy of one file. `current()` re-reads the file at most every
    `check_every` seconds and swaps the policy when its content hash changed; a new content
    that does not validate is logged and refused, and the last good policy stays in force.

    The first load must succeed (raises PolicyError): a service never starts without a policy.
    """

    def __init__(self, path: Path, *, check_every: float = 1.0) -> None:
        self._path = path
        self._check_every = check_every
        content = path.read_bytes()
        self._policy = _parse(content, path)
        self._digest = hashlib.sha256(content).hexdigest()
        self._checked_at = time.monotonic()
        self.last_error: str | None = None

    @property
    def digest(self) -> str:
        """SHA-256 of the file content the current policy came from."""
        return self._digest

    def current(self) -> Policy:
        if time.monotonic() - self._checked_at >= self._check_every:
            self.reload()
        return self._policy

    def reload(self) -> bool:
        """Read the file now; True when a new policy took effect."""
        self._checked_at = time.monotonic()
        try:
            content = self._path.read_bytes()
        except OSError as exc:
            return self._refuse(f"unreadable: {exc.__class__.__name__}")
        digest = hashlib.sha256(content).hexdigest()
        if digest == self._digest:
            return False
        try:
            policy = _parse(content, self._path)
        except PolicyError as exc:
            return self._refuse(str(exc))
        previous = self._policy.version
        self._policy, self._digest, self.last_error = policy, digest, None
        logger.info("risk policy reloaded", previous_version=previous, version=policy.version, digest=digest[:12])
        return True

    def _refuse(self, error: str) -> bool:
        if error != self.last_error:
            logger.error(
                "risk policy file refused; the last good policy stays in force",
                version=self._policy.version,
                error=error,
            )
        self.last_error = error
        return False
