"""Client authentication on the inference listeners: API keys and/or JWTs (off unless configured).

`Authenticator.authenticate` takes the `Authorization` and `x-api-key` header values and returns the
principal's name, or raises `errors.Unauthorized` (401 with `WWW-Authenticate: Bearer`). Either method
may succeed when both are configured. Keys and tokens are never logged.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from kthena_router import errors
from kthena_router.auth.apikeys import ApiKeyFile
from kthena_router.settings import Settings

log = logging.getLogger(__name__)


class Authenticator:
    def __init__(self, *, keys: ApiKeyFile | None = None, verifier=None, refresh_interval: float = 300.0) -> None:
        self.keys = keys
        self.verifier = verifier
        self.refresh_interval = refresh_interval
        self._session: aiohttp.ClientSession | None = None
        self._refresher: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator | None:
        if not settings.api_keys_file and not settings.jwks_uri:
            return None
        keys = ApiKeyFile(settings.api_keys_file) if settings.api_keys_file else None
        verifier = None
        if settings.jwks_uri:
            from kthena_router.auth.jwt import JWKS, JWTVerifier

            verifier = JWTVerifier(JWKS(settings.jwks_uri), issuer=settings.jwt_issuer,
                                   audiences=settings.jwt_audiences)
        return cls(keys=keys, verifier=verifier, refresh_interval=settings.jwks_refresh_interval)

    async def start(self) -> None:
        """Load the key set (three tries); keep it fresh in the background."""
        if self.verifier is None:
            return
        jwks = self.verifier.jwks
        if jwks.uri.startswith(("http://", "https://")):
            self._session = aiohttp.ClientSession()
            jwks.session = self._session
        for attempt in range(3):
            try:
                await jwks.load()
                break
            except (OSError, ValueError, aiohttp.ClientError) as exc:
                if attempt == 2:
                    raise ValueError(f"cannot load the JSON Web Key Set {jwks.uri}: {exc}") from None
                await asyncio.sleep(1.0)
        self._refresher = asyncio.create_task(self._refresh(), name="jwks-refresh")

    async def _refresh(self) -> None:
        jwks = self.verifier.jwks
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await jwks.load()
            except (OSError, ValueError, aiohttp.ClientError) as exc:
                log.warning("refreshing JWKS %s failed (keeping the keys loaded before): %s", jwks.uri, exc)

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def authenticate(self, authorization: str | None, api_key: str | None) -> str:
        bearer = None
        if authorization:
            scheme, _, credentials = authorization.strip().partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                bearer = credentials.strip()
        if self.keys is not None:
            for candidate in (api_key, bearer):
                if candidate:
                    name = self.keys.lookup(candidate)
                    if name is not None:
                        return name
        if self.verifier is not None and bearer is not None and bearer.count(".") == 2:
            from kthena_router.auth.jwt import TokenRejected

            try:
                return await self.verifier.verify(bearer)
            except TokenRejected as exc:
                raise errors.Unauthorized(f"invalid bearer token: {exc}") from None
        if bearer is None and not api_key:
            raise errors.Unauthorized("missing credentials: send 'Authorization: Bearer <key or token>'")
        raise errors.Unauthorized("incorrect API key provided")
