"""Client authentication on the inference listeners: API keys and/or JWTs (off unless configured).

`authenticator.py` is the entry point the proxy calls; `apikeys.py` (a file) and `secret.py` (a Kubernetes
Secret) hold API keys as digests; `jwks.py` loads the key set that `jwt.py` verifies tokens with.
"""

from kthena_router.auth.authenticator import AuthConfigError, Authenticator, Principal

__all__ = ["AuthConfigError", "Authenticator", "Principal"]
