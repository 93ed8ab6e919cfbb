"""Bearer JWTs checked against a JSON Web Key Set, as Kthena's router does, plus key rotation.

Accepted: RSA (RS*, PS*) and EC (ES*) signatures by a key of the set whose type fits the algorithm; never
`none`, never HMAC. Claims: `exp` required, `nbf` and `iat` not in the future, with 60 s of leeway; `iss`
equal to the configured issuer and `aud` naming one of the configured audiences (each only when
configured). The principal is `sub` (else `azp`, `client_id`).

The set (`jwks.py`) is loaded by `Authenticator` at start and every refresh interval; here it is loaded
again at once when a token names a key id the set does not have, at most every 30 s and by one fetch that
concurrent requests share, so a rotation at the issuer is followed before the old key is retired. Verified
tokens are cached (least recently used, bounded) until they expire or the set changes, so a client reusing
its token costs a dict lookup.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt

from kthena_router.auth.jwks import ALGORITHMS, JWKS, SigningKey

log = logging.getLogger(__name__)

LEEWAY = 60.0
UNKNOWN_KID_REFETCH = 30.0
CACHE_SIZE = 10_000
_PRINCIPAL_CLAIMS = ("sub", "azp", "client_id")


class TokenRejected(Exception):
    """The token is not acceptable; the message says why (it never contains the token)."""


class JWTVerifier:
    def __init__(self, jwks: JWKS, *, issuer: str | None, audiences: tuple[str, ...],
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 refetch_interval: float = UNKNOWN_KID_REFETCH, cache_size: int = CACHE_SIZE) -> None:
        self.jwks = jwks
        self.issuer = issuer
        self.audiences = list(audiences) or None
        self.clock = clock
        self.monotonic = monotonic
        self.refetch_interval = refetch_interval
        self.cache_size = cache_size
        self._cache: collections.OrderedDict[str, tuple[str, float]] = collections.OrderedDict()
        self._cache_version = jwks.version
        # Times are checked here, against `clock`; PyJWT checks the signature, `iss`, `aud` and presence.
        self._options = {"require": ["exp"], "verify_aud": bool(audiences), "verify_iss": bool(issuer),
                         "verify_exp": False, "verify_nbf": False, "verify_iat": False}
        self._last_refetch = float("-inf")
        self._refetch: asyncio.Task[None] | None = None

    async def verify(self, token: str) -> str:
        """The principal of a valid token; TokenRejected otherwise."""
        cache = self._cache
        if self._cache_version != self.jwks.version:  # keys changed: what they verified may not hold
            cache.clear()
            self._cache_version = self.jwks.version
        cached = cache.get(token)
        if cached is not None:
            principal, expires = cached
            if expires + LEEWAY > self.clock():
                cache.move_to_end(token)
                return principal
            del cache[token]
        principal, expires = await self._verify(token)
        if self._cache_version == self.jwks.version:
            cache[token] = (principal, expires)
            if len(cache) > self.cache_size:
                cache.popitem(last=False)
        return principal

    async def close(self) -> None:
        if self._refetch is not None:
            self._refetch.cancel()
            await asyncio.gather(self._refetch, return_exceptions=True)

    async def _verify(self, token: str) -> tuple[str, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.exceptions.PyJWTError:
            raise TokenRejected("the bearer token is not a JWT") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            raise TokenRejected(f"signature algorithm {str(algorithm)[:20]!r} is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenRejected("the token's key id is not a string")
        keys = await self._keys_for(kid, algorithm)
        signature_failure: TokenRejected | None = None
        for key in keys:
            try:
                claims = jwt.decode(token, key.key, algorithms=[algorithm], audience=self.audiences,
                                    issuer=self.issuer, leeway=LEEWAY, options=self._options)
            except jwt.exceptions.InvalidSignatureError:
                signature_failure = TokenRejected("the token's signature does not verify")
                continue
            except jwt.exceptions.InvalidAudienceError:
                raise TokenRejected("the token is not for this audience") from None
            except jwt.exceptions.InvalidIssuerError:
                raise TokenRejected("the token has another issuer") from None
            except jwt.exceptions.MissingRequiredClaimError as exc:
                raise TokenRejected(f"the token has no {exc.claim!r} claim") from None
            except jwt.exceptions.PyJWTError as exc:
                raise TokenRejected(f"the token is not valid: {type(exc).__name__}") from None
            expires = self._check_times(claims)
            principal = next((str(claims[c]) for c in _PRINCIPAL_CLAIMS if claims.get(c)), "jwt")
            return principal, expires
        raise signature_failure or TokenRejected(f"no key in the key set fits algorithm {algorithm}")

    def _check_times(self, claims: dict[str, Any]) -> float:
        """`exp` past, or `nbf`/`iat` in the future, beyond the leeway: rejected. Returns `exp`."""
        now = self.clock()
        times = {}
        for claim in ("exp", "nbf", "iat"):
            value = claims.get(claim)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TokenRejected(f"the token's {claim!r} claim is not a number")
            times[claim] = float(value)
        if times["exp"] + LEEWAY <= now:
            raise TokenRejected("the token has expired")
        if times.get("nbf", 0.0) - LEEWAY > now or times.get("iat", 0.0) - LEEWAY > now:
            raise TokenRejected("the token is not valid yet (nbf or iat in the future)")
        return times["exp"]

    async def _keys_for(self, kid: str | None, algorithm: str) -> list[SigningKey]:
        if kid is None:
            return self.jwks.candidates(algorithm)
        key = self.jwks.get(kid)
        if key is None:
            await self._refetch_once()  # maybe the issuer rotated its keys
            key = self.jwks.get(kid)
            if key is None:
                raise TokenRejected(f"no key {kid[:64]!r} in the key set")
        if not key.accepts(algorithm):
            raise TokenRejected(f"key {kid[:64]!r} is not for algorithm {algorithm}")
        return [key]

    async def _refetch_once(self) -> None:
        """Load the set again, sharing a fetch in progress; at most once per `refetch_interval`."""
        if self._refetch is None:
            now = self.monotonic()
            if now - self._last_refetch < self.refetch_interval:
                return
            self._last_refetch = now
            self._refetch = asyncio.create_task(self._load(), name="jwks-unknown-kid-fetch")
        await asyncio.shield(self._refetch)  # a client that leaves does not cancel the shared fetch

    async def _load(self) -> None:
        try:
            await self.jwks.load()
        except (OSError, ValueError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("fetching JWKS %s for an unknown key id failed: %s", self.jwks.uri, exc)
        finally:
            self._refetch = None
