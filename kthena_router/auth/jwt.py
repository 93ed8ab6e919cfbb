"""Bearer JWTs checked against a JSON Web Key Set, as Kthena's router does, plus key rotation.

Accepted: RSA (RS*/PS*) and EC (ES*) signatures by a key of the set; never `none`, never HMAC. Claims:
`exp` required, `nbf` and `iat` honoured with 60 s of leeway, `iss` equal to the configured issuer and
`aud` naming one of the configured audiences (each only when configured). The principal is `sub`.

The set is read at start (a failure there stops the router with a clear message), again every refresh
interval, and at once when a token names a key id the set does not have (at most every 30 s), so a
rotation at the issuer is picked up before the old key is retired. Verified tokens are cached until
they expire, so a client reusing its token costs a dict lookup.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from pathlib import Path

import aiohttp
import jwt
import orjson

log = logging.getLogger(__name__)

ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
LEEWAY = 60.0
_UNKNOWN_KID_REFETCH = 30.0
_CACHE_SIZE = 10_000


class TokenRejected(Exception):
    """The token is not acceptable; the message says why (it never contains the token)."""


class JWKS:
    """The key set: kid -> key, loaded from an http(s) URL or a file."""

    def __init__(self, uri: str, *, session: aiohttp.ClientSession | None = None) -> None:
        self.uri = uri
        self.session = session
        self.keys: dict[str | None, jwt.PyJWK] = {}
        self.loaded_at = 0.0

    async def load(self) -> None:
        if self.uri.startswith(("http://", "https://")):
            assert self.session is not None
            async with self.session.get(self.uri, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                if resp.status != 200:
                    raise ValueError(f"GET {self.uri} answered {resp.status}")
                data = orjson.loads(await resp.read())
        else:
            path = self.uri.removeprefix("file://")
            data = orjson.loads(await asyncio.to_thread(Path(path).read_bytes))
        keys: dict[str | None, jwt.PyJWK] = {}
        for raw in data.get("keys", []) if isinstance(data, dict) else []:
            if raw.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(raw)
            except (jwt.exceptions.PyJWKError, jwt.exceptions.InvalidKeyError) as exc:
                log.warning("JWKS %s: skipping key %s: %s", self.uri, raw.get("kid"), exc)
                continue
            keys[raw.get("kid")] = key
        if not keys:
            raise ValueError(f"JWKS {self.uri} has no usable signing keys")
        self.keys = keys
        self.loaded_at = time.monotonic()


class JWTVerifier:
    def __init__(self, jwks: JWKS, *, issuer: str | None, audiences: tuple[str, ...], clock=time.time) -> None:
        self.jwks = jwks
        self.issuer = issuer
        self.audiences = audiences
        self.clock = clock
        self._cache: collections.OrderedDict[str, tuple[str, float]] = collections.OrderedDict()
        self._last_refetch = 0.0

    async def verify(self, token: str) -> str:
        """The principal (`sub`) of a valid token; TokenRejected otherwise."""
        cached = self._cache.get(token)
        if cached is not None:
            principal, expires = cached
            if expires > self.clock():
                return principal
            del self._cache[token]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.exceptions.DecodeError:
            raise TokenRejected("the bearer token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise TokenRejected(f"signature algorithm {algorithm!r} is not accepted")
        key = await self._key(header.get("kid"))
        options = {"require": ["exp"], "verify_aud": bool(self.audiences), "verify_iss": bool(self.issuer)}
        try:
            claims = jwt.decode(token, key.key, algorithms=[algorithm], audience=list(self.audiences) or None,
                                issuer=self.issuer, leeway=LEEWAY, options=options)
        except jwt.exceptions.ExpiredSignatureError:
            raise TokenRejected("the token has expired") from None
        except jwt.exceptions.ImmatureSignatureError:
            raise TokenRejected("the token is not valid yet") from None
        except jwt.exceptions.InvalidAudienceError:
            raise TokenRejected("the token is not for this audience") from None
        except jwt.exceptions.InvalidIssuerError:
            raise TokenRejected("the token has another issuer") from None
        except jwt.exceptions.InvalidSignatureError:
            raise TokenRejected("the token's signature does not verify") from None
        except jwt.exceptions.PyJWTError as exc:
            raise TokenRejected(f"the token is not valid: {exc}") from None
        principal = str(claims.get("sub") or "")
        self._cache[token] = (principal, float(claims["exp"]))
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return principal

    async def _key(self, kid: str | None) -> jwt.PyJWK:
        keys = self.jwks.keys
        key = keys.get(kid) if kid is not None or None in keys else (
            next(iter(keys.values())) if len(keys) == 1 else None)
        if key is not None:
            return key
        now = time.monotonic()
        if now - self._last_refetch >= _UNKNOWN_KID_REFETCH:  # maybe the issuer rotated its keys
            self._last_refetch = now
            try:
                await self.jwks.load()
                self._cache.clear()
            except (OSError, ValueError, aiohttp.ClientError) as exc:
                log.warning("refreshing JWKS %s failed: %s", self.jwks.uri, exc)
            key = self.jwks.keys.get(kid)
            if key is not None:
                return key
        raise TokenRejected(f"no key {kid!r} in the key set")
