"""Unavailable: something the service depends on cannot serve now.

An adapter raises a subclass naming its dependency (PostgreSQL, the object
store, the Kubernetes API server) when it cannot reach it, or is told to come back later.  Nothing is
wrong with the request, which may be repeated shortly: the API answers 503 with
``Retry-After``, and a worker's message is retried like after any failure.
"""
from __future__ import annotations


class Unavailable(RuntimeError):
    """A dependency is away; the message says which, in words a client may see."""
