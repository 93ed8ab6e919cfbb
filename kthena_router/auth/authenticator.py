"""Who is calling: one check per request on the inference listeners, from the credential headers alone.

`Authenticator.authenticate(authorization, api_key)` takes the values of the `Authorization` and
`x-api-key` headers and returns the `Principal`, or raises `errors.Unauthorized` (401, `invalid_api_key`,
`WWW-Authenticate: Bearer`), which the proxy's error boundary renders. API keys (a file and/or a Kubernetes
Secret) and JWTs (a JSON Web Key Set) may both be configured; either then authenticates. An API key costs
one SHA-256 and a dict probe per store, a token seen before one dict lookup.

`start()` loads what needs loading (the key set, with retries; the Secret's first list, bounded) and
starts the owned background tasks (key file checks, Secret watch, key set refresh); `close()` cancels and
awaits them and closes the clients it opened. Keys and tokens are never logged or echoed in messages.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import aiohttp

from kthena_router import errors
from kthena_router.auth.apikeys import ApiKeyFile, digest
from kthena_router.auth.jwks import JWKS
from kthena_router.auth.jwt import JWTVerifier, TokenRejected
from kthena_router.settings import Settings
from kthena_router.tasks import TaskGroup

if TYPE_CHECKING:  # kubernetes_asyncio is imported only when a Secret is used: it takes most of a second
    from kthena_router.auth.secret import ApiKeySecret

log = logging.getLogger(__name__)

JWKS_START_ATTEMPTS = 3
SECRET_START_WAIT = 10.0  # then the router starts anyway; keys from the Secret work once it is read


class AuthConfigError(ValueError):
    """A flag, key file, key set or Secret that makes authentication impossible: the router does not start."""


@dataclass(frozen=True, slots=True)
class Principal:
    name: str  # the key's name, or the token's `sub`
    method: Literal["api_key", "jwt"]


class Authenticator:
    """The configured credential stores and verifier, and the background tasks that keep them current."""

    def __init__(self, *, key_file: ApiKeyFile | None = None, key_secret: ApiKeySecret | None = None,
                 secret_ref: tuple[str, str] | None = None, verifier: JWTVerifier | None = None,
                 refresh_interval: float = 300.0, kubeconfig: str | None = None) -> None:
        self.key_file = key_file
        self.key_secret = key_secret
        self.secret_ref = secret_ref  # (namespace, name): `start()` builds `key_secret` with its own client
        self.verifier = verifier
        self.refresh_interval = refresh_interval
        self.kubeconfig = kubeconfig
        self._stores: tuple[ApiKeyFile | ApiKeySecret, ...] = ()
        self._session: aiohttp.ClientSession | None = None
        self._kube_client: Any = None  # a kubernetes_asyncio ApiClient, opened for the Secret
        self.tasks = TaskGroup()
        self._refresh_stores()

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator | None:
        """None when no method is configured. Raises AuthConfigError for a bad flag or unreadable key file."""
        secret = settings.api_keys_secret
        if not settings.api_keys_file and not secret and not settings.jwks_uri:
            return None
        secret_ref = None
        try:
            key_file = ApiKeyFile(settings.api_keys_file) if settings.api_keys_file else None
            if secret:
                from kthena_router.auth.secret import parse_secret_ref

                secret_ref = parse_secret_ref(secret, settings.namespace)
        except ValueError as exc:
            raise AuthConfigError(str(exc)) from None
        verifier = None
        if settings.jwks_uri:
            verifier = JWTVerifier(JWKS(settings.jwks_uri), issuer=settings.jwt_issuer,
                                   audiences=settings.jwt_audiences)
        return cls(key_file=key_file, secret_ref=secret_ref, verifier=verifier,
                   refresh_interval=settings.jwks_refresh_interval, kubeconfig=settings.kubeconfig)

    # --- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.key_file is not None:
            self.tasks.spawn(self.key_file.watch(), "api-keys-file-watch")
        if self.key_secret is None and self.secret_ref is not None:
            from kthena_router.auth.secret import ApiKeySecret
            from kthena_router.sources.kube import KubeApi, KubeConfigMissing, api_client

            namespace, name = self.secret_ref
            try:
                self._kube_client = await api_client(self.kubeconfig)
            except KubeConfigMissing as exc:
                raise AuthConfigError(f"--api-keys-secret needs the Kubernetes API: {exc}") from None
            self.key_secret = ApiKeySecret(KubeApi(self._kube_client), namespace, name)
            self._refresh_stores()
        if self.key_secret is not None:
            await self._start_secret(self.key_secret)
        if self.verifier is not None:
            await self._start_jwks(self.verifier.jwks)

    async def close(self) -> None:
        await self.tasks.close()
        if self.verifier is not None:
            await self.verifier.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._kube_client is not None:
            await self._kube_client.close()
            self._kube_client = None

    async def _start_secret(self, secret: ApiKeySecret) -> None:
        try:
            async with asyncio.timeout(SECRET_START_WAIT):
                await secret.first_list()
        except (TimeoutError, OSError, aiohttp.ClientError):
            pass  # not reachable now: the watch below retries
        except ValueError as exc:
            raise AuthConfigError(str(exc)) from None
        self.tasks.spawn(secret.run(), "api-keys-secret-watch")
        try:
            async with asyncio.timeout(SECRET_START_WAIT):
                await secret.listed.wait()
        except TimeoutError:
            log.warning("API keys Secret %s/%s not read within %gs; its keys are refused until it is",
                        secret.namespace, secret.name, SECRET_START_WAIT)

    async def _start_jwks(self, jwks: JWKS) -> None:
        if jwks.remote:
            self._session = aiohttp.ClientSession()
            jwks.session = self._session
        for attempt in range(1, JWKS_START_ATTEMPTS + 1):
            try:
                await jwks.load()
                break
            except (OSError, ValueError, aiohttp.ClientError, TimeoutError) as exc:
                if attempt == JWKS_START_ATTEMPTS:
                    raise AuthConfigError(f"cannot load the JSON Web Key Set {jwks.uri}: {exc}") from None
                log.warning("loading JWKS %s failed (%s); trying again", jwks.uri, exc)
                await asyncio.sleep(attempt)
        if self.refresh_interval > 0:
            self.tasks.spawn(self._refresh_jwks(jwks), "jwks-refresh")

    async def _refresh_jwks(self, jwks: JWKS) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await jwks.load()
            except (OSError, ValueError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("refreshing JWKS %s failed (keeping the keys loaded before): %s", jwks.uri, exc)

    def _refresh_stores(self) -> None:
        self._stores = tuple(store for store in (self.key_file, self.key_secret) if store is not None)

    # --- the request path -----------------------------------------------------------------------------

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        bearer = None
        if authorization:
            scheme, _, credentials = authorization.strip().partition(" ")
            if scheme.lower() == "bearer":
                bearer = credentials.strip() or None
        stores = self._stores
        if stores:
            for candidate in (api_key, bearer):
                if candidate:
                    key_digest = digest(candidate)
                    for store in stores:
                        name = store.lookup(key_digest)
                        if name is not None:
                            return Principal(name, "api_key")
        verifier = self.verifier
        if verifier is not None and bearer is not None and bearer.count(".") == 2:
            try:
                return Principal(await verifier.verify(bearer), "jwt")
            except TokenRejected as exc:
                raise errors.Unauthorized(f"invalid bearer token: {exc}") from None
        if bearer is None and not api_key:
            raise errors.Unauthorized("missing credentials: send 'Authorization: Bearer <key or token>'")
        raise errors.Unauthorized("incorrect API key provided")
