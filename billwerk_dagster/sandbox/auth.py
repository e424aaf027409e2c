"""The sandbox's OAuth 2.0 client-credentials grant and its bearer tokens.

Tokens are random and opaque, like Billwerk's: they can expire or be revoked before
`expires_in` has passed. Every token ever issued is remembered, so a test can scan logs
and files for them after a run.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import threading
import time
from urllib.parse import unquote_plus


class Tokens:
    """Checks client credentials, issues tokens, and says whether a token is live."""

    def __init__(self, client_id: str, client_secret: str, ttl_s: float = 3600) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._issued: list[str] = []

    def client_matches(self, authorization: str | None, form: dict[str, str]) -> bool:
        """True for the right client id and secret, from HTTP Basic auth or the form."""
        if authorization and authorization[:6].lower() == "basic ":
            try:
                raw = base64.b64decode(authorization[6:].strip(), validate=True)
            except ValueError:
                return False
            # Clients differ: UTF-8 or Latin-1, form-encoded first (RFC 6749) or not.
            for encoding in ("utf-8", "latin-1"):
                try:
                    basic_id, _, basic_secret = raw.decode(encoding).partition(":")
                except UnicodeDecodeError:
                    continue
                if self._matches(basic_id, basic_secret) or self._matches(
                    unquote_plus(basic_id), unquote_plus(basic_secret)
                ):
                    return True
            return False

        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        return (
            client_id is not None
            and client_secret is not None
            and (self._matches(client_id, client_secret))
        )

    def _matches(self, client_id: str, client_secret: str) -> bool:
        same_id = hmac.compare_digest(client_id.encode(), self.client_id.encode())
        same_secret = hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
        return same_id and same_secret

    @property
    def expires_in(self) -> float:
        """The lifetime announced with each token: whole seconds unless set finer."""
        return int(self.ttl_s) if self.ttl_s == int(self.ttl_s) else self.ttl_s

    def issue(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._expiry[token] = time.monotonic() + self.ttl_s
            self._issued.append(token)
        return token

    def is_live(self, token: str) -> bool:
        with self._lock:
            expiry = self._expiry.get(token)
        return expiry is not None and time.monotonic() < expiry

    def revoke_all(self) -> int:
        """Make every live token invalid at once; returns how many were live."""
        with self._lock:
            now = time.monotonic()
            live = sum(1 for expiry in self._expiry.values() if expiry > now)
            self._expiry.clear()
        return live

    @property
    def issued(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._issued)
