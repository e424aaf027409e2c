"""OAuth2 client credentials for Billwerk, on top of dlt's own auth class.

dlt's `OAuth2ClientCredentials` gets a token and refreshes it once it has expired. Billwerk
tokens can also be revoked before they expire, and a refused secret must not be asked for
again and again (unauthenticated traffic can get an IP banned). This subclass adds three
things: refresh shortly *before* expiry, one refresh-and-resend on a 401, and a refusal
that is remembered for the rest of the sync.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pendulum
import requests
from dlt.common.configuration import configspec
from dlt.sources.helpers.rest_client.auth import OAuth2ClientCredentials
from requests import PreparedRequest, Response

from billwerk_dagster.billwerk.errors import BillwerkAuthError, excerpt

logger = logging.getLogger(__name__)

TOKEN_PATH = "oauth/token/"
CREDENTIALS_HINT = "check BILLWERK_CLIENT_ID and BILLWERK_CLIENT_SECRET"

# Marks a request already re-sent once after a 401, so a second 401 is final.
_RESENT = "_billwerk_resent_after_401"


@configspec
class BillwerkOAuth2(OAuth2ClientCredentials):
    """Client credentials auth that survives revoked tokens and never loops on bad secrets."""

    refresh_margin_seconds: int = 60

    def __post_init__(self) -> None:
        super().__post_init__()
        self.token_requests = 0
        self._lock = threading.Lock()
        self._refused: BillwerkAuthError | None = None

    def __repr__(self) -> str:
        # The dataclass repr would print the secret and the token.
        return f"{type(self).__name__}(access_token_url={self.access_token_url!r})"

    __str__ = __repr__

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.current_token()}"
        request.register_hook("response", self._resend_once_on_401)
        return request

    def current_token(self, stale: str | None = None) -> str:
        """A live token; a new one if it is about to expire or equals `stale` (revoked)."""
        with self._lock:
            if self._refused is not None:
                raise self._refused
            if self.access_token is None or self.is_token_expired() or self.access_token == stale:
                self.obtain_token()
            return str(self.access_token)

    def is_token_expired(self) -> bool:
        return pendulum.now() >= self.token_expiry.subtract(seconds=self.refresh_margin_seconds)

    def parse_expiration_in_seconds(self, response_json: Any) -> int:
        expires_in = super().parse_expiration_in_seconds(response_json)
        # A short-lived token must still be used at least once before it counts as expiring.
        self.refresh_margin_seconds = min(self.refresh_margin_seconds, expires_in // 10)
        return expires_in

    def obtain_token(self) -> None:
        self.token_requests += 1
        try:
            response = self.session.post(self.access_token_url, **self.build_access_token_request())
        except requests.RequestException as e:
            raise BillwerkAuthError(
                f"Could not reach the Billwerk token endpoint {self.access_token_url}: "
                f"{type(e).__name__}. Check BILLWERK_BASE_URL and the network."
            ) from None

        if response.status_code in (400, 401, 403):
            self._refused = BillwerkAuthError(
                f"Billwerk refused the client credentials (HTTP {response.status_code} from "
                f"{self.access_token_url}): {CREDENTIALS_HINT}. Not retried: a wrong secret "
                "is a configuration error, and repeated attempts can get this IP banned."
            )
            raise self._refused
        if response.status_code >= 300:
            raise BillwerkAuthError(
                f"The Billwerk token endpoint {self.access_token_url} answered HTTP "
                f"{response.status_code}: {excerpt(response.text)}"
            )

        try:
            body = response.json()
            token = body["access_token"]
        except (ValueError, KeyError, TypeError):
            raise BillwerkAuthError(
                f"The Billwerk token endpoint {self.access_token_url} answered without an "
                f"access_token (HTTP {response.status_code}); check BILLWERK_BASE_URL."
            ) from None
        self.parse_native_representation(str(token))
        self.token_expiry = pendulum.now().add(seconds=self.parse_expiration_in_seconds(body))
        logger.info("Obtained a Billwerk access token, valid for %ss", body.get("expires_in"))

    def _resend_once_on_401(self, response: Response, **send_kwargs: Any) -> Response:
        # The same move as requests' digest auth: answer a 401 by re-sending the request
        # with fresh credentials from inside the response hook.
        request = response.request
        if response.status_code != 401 or getattr(request, _RESENT, False):
            return response
        used = str(request.headers.get("Authorization", "")).removeprefix("Bearer ")
        logger.info("Billwerk answered 401: the token was revoked; getting a new one once")

        token = self.current_token(stale=used)
        response.content  # noqa: B018 - drain the body so the connection can be reused
        response.close()
        resent = request.copy()
        resent.headers["Authorization"] = f"Bearer {token}"
        setattr(resent, _RESENT, True)

        assert response.connection is not None
        retried: Response = response.connection.send(resent, **send_kwargs)
        retried.history.append(response)
        retried.request = resent
        return retried
