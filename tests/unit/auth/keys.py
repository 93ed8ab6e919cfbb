"""Real signing keys for the auth tests: key pairs from `cryptography`, their JWKs, and signed tokens."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://issuer.example"
AUDIENCE = "kthena"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def jwk(private: Any, kid: str | None, **extra: Any) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(private, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
    data = json.loads(algorithm.to_jwk(private.public_key()))
    if kid is not None:
        data["kid"] = kid
    return {**data, "use": "sig", **extra}


def write_jwks(path: Path, *keys: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"keys": list(keys)}))
    return path


def token(private: Any, *, kid: str | None = "r1", alg: str = "RS256", now: float | None = None,
          **claims: Any) -> str:
    """A token signed by `private`; a claim given as None is left out."""
    issued = int(time.time() if now is None else now)
    body = {"sub": "user-1", "iss": ISSUER, "aud": AUDIENCE, "exp": issued + 600, "iat": issued, **claims}
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, private, algorithm=alg, headers=headers)
