"""The JSON Web Key Set that signs accepted JWTs: read from an http(s) URL or a file, versioned on change.

Only asymmetric signing keys are kept (`kty` RSA or EC, `use` absent or `sig`); each remembers its type,
curve and declared `alg`, so a token can only be checked with an algorithm its key is meant for (an ES256
token naming an RSA key is refused, not tried). `version` grows whenever the set's contents change, which
tells the verifier to forget tokens it verified with the keys before. `jwt.py` decides when to load.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson

log = logging.getLogger(__name__)

# Algorithm -> (key type, curve). Never `none`, never HMAC: a public key must not double as a shared secret.
ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None), "RS384": ("RSA", None), "RS512": ("RSA", None),
    "PS256": ("RSA", None), "PS384": ("RSA", None), "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
}
FETCH_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str | None
    kty: str
    crv: str | None
    alg: str | None  # as declared by the set, if it does
    key: Any  # a `cryptography` public key

    def accepts(self, algorithm: str) -> bool:
        wanted = ALGORITHMS.get(algorithm)
        if wanted is None or (self.alg is not None and self.alg != algorithm):
            return False
        kty, crv = wanted
        return self.kty == kty and (crv is None or self.crv == crv)


class JWKS:
    def __init__(self, uri: str, *, session: aiohttp.ClientSession | None = None) -> None:
        self.uri = uri
        self.session = session  # required for http(s) URIs
        self.keys: dict[str | None, SigningKey] = {}
        self.version = 0
        self._fingerprint: frozenset[bytes] = frozenset()

    @property
    def remote(self) -> bool:
        return self.uri.startswith(("http://", "https://"))

    def get(self, kid: str | None) -> SigningKey | None:
        return self.keys.get(kid)

    def candidates(self, algorithm: str) -> list[SigningKey]:
        """Keys that may have signed a token without a `kid`."""
        return [key for key in self.keys.values() if key.accepts(algorithm)]

    async def load(self) -> bool:
        """Fetch and parse the set; True when its contents changed. Raises OSError, ValueError or
        aiohttp.ClientError, keeping the keys loaded before."""
        data = await self._fetch()
        raw_keys = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(raw_keys, list):
            raise ValueError(f"JWKS {self.uri} is not a JSON Web Key Set (no `keys` list)")
        keys: dict[str | None, SigningKey] = {}
        fingerprint = set()
        for raw in raw_keys:
            key = self._signing_key(raw)
            if key is not None:
                keys[key.kid] = key
                fingerprint.add(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS))
        if not keys:
            raise ValueError(f"JWKS {self.uri} has no usable signing keys (RSA or EC)")
        self.keys = keys
        if frozenset(fingerprint) != self._fingerprint:
            self._fingerprint = frozenset(fingerprint)
            self.version += 1
            log.info("JWKS %s: %d signing keys (%s)", self.uri, len(keys),
                     ", ".join(sorted(str(kid) for kid in keys)))
            return True
        return False

    async def _fetch(self) -> Any:
        if self.remote:
            if self.session is None:
                raise ValueError("no HTTP session to fetch the JWKS with")
            async with self.session.get(self.uri, timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT)) as resp:
                if resp.status != 200:
                    raise ValueError(f"GET {self.uri} answered {resp.status}")
                body = await resp.read()
        else:
            body = await asyncio.to_thread(Path(self.uri.removeprefix("file://")).read_bytes)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"JWKS {self.uri} is not JSON: {exc}") from None

    def _signing_key(self, raw: Any) -> SigningKey | None:
        if not isinstance(raw, dict):
            return None
        kid = raw.get("kid")
        kty = raw.get("kty")
        if kty not in ("RSA", "EC") or raw.get("use", "sig") != "sig":
            return None  # HMAC (`oct`), OKP, encryption keys: not accepted here
        alg = raw.get("alg")
        if alg is not None and (not isinstance(alg, str) or alg not in ALGORITHMS):
            log.warning("JWKS %s: skipping key %s with algorithm %r", self.uri, kid, alg)
            return None
        try:
            parsed = jwt.PyJWK(raw).key
        except (jwt.exceptions.PyJWKError, jwt.exceptions.InvalidKeyError, ValueError, TypeError) as exc:
            log.warning("JWKS %s: skipping key %s: %s", self.uri, kid, exc)
            return None
        if hasattr(parsed, "public_key"):  # a private JWK: only its public half is of use
            parsed = parsed.public_key()
        return SigningKey(kid if isinstance(kid, str) else None, kty, raw.get("crv"), alg, parsed)
