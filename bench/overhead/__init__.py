"""Proxy overhead: what nginx, vllm-router, sglang-router and our router each add per request, one core each.

`python -m bench.overhead` (or `make bench-overhead`) runs it; see bench/README.md.
"""
