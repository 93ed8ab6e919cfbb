"""kthena-router: an OpenAI-compatible data-plane router for LLM inference on Kubernetes.

It implements the Gateway API (GatewayClass, Gateway, HTTPRoute, ReferenceGrant) and the Gateway API
Inference Extension (InferencePool, InferenceObjective) natively: the router matches routes, picks an
endpoint of an InferencePool itself and streams the response back.
"""

__version__ = "0.1.0"
