"""Per-job upload tokens: what a collector pod presents to ``PUT /internal/jobs/{id}/files/{name}``.

A token is HMAC-SHA256 of the job id under one key, so the worker that starts the collector and the API that
receives its uploads agree without storing anything, and a token names one job only.  The key is
COLLECT_TOKEN_SECRET, or else derived from ADMIN_KEY (operators manage no new secret; a derived key never
reveals ADMIN_KEY, and a token never reveals the key).  Pure functions: no I/O.
"""
from __future__ import annotations

import hashlib
import hmac

_DERIVATION = b"sumo-k8 collector upload tokens v1"


class NoTokenKey(ValueError):
    """Neither COLLECT_TOKEN_SECRET nor ADMIN_KEY is set: no token can be made or checked."""


def token_key(collect_token_secret: str, admin_key: str) -> bytes:
    """The key tokens are made with."""
    if collect_token_secret:
        return collect_token_secret.encode()
    if admin_key:
        return hmac.new(admin_key.encode(), _DERIVATION, hashlib.sha256).digest()
    raise NoTokenKey("collector uploads need COLLECT_TOKEN_SECRET or ADMIN_KEY to be set")


def job_token(key: bytes, job_id: str) -> str:
    """The token of ``job_id`` (64 hex digits)."""
    return hmac.new(key, f"job:{job_id}".encode(), hashlib.sha256).hexdigest()


def token_matches(key: bytes, job_id: str, presented: str) -> bool:
    """Whether ``presented`` is the token of ``job_id``, compared in constant time."""
    return hmac.compare_digest(job_token(key, job_id).encode(), presented.encode("utf-8", errors="replace"))
