"""Refusals a use case can return; the API renders each as its status code."""
from __future__ import annotations


class ServiceError(Exception):
    status_code = 400

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class Unauthenticated(ServiceError):
    """The API key presented is not (or no longer) any tenant's."""

    status_code = 401


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class Invalid(ServiceError):
    status_code = 422


class Forbidden(ServiceError):
    status_code = 403


class PayloadTooLarge(ServiceError):
    """What the request would store passes a limit (the tenant's max_stored_gb)."""

    status_code = 413


class Gone(ServiceError):
    """What was asked for existed and was deleted (DELETE /jobs/{id}/data, retention)."""

    status_code = 410


class TooManyRequests(ServiceError):
    """A limit that waiting lifts (a full queue, the submission rate): ``retry_after`` seconds, for the
    ``Retry-After`` header."""

    status_code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))
