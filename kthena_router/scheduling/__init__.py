"""Choosing the endpoint of a pool that serves a request."""
