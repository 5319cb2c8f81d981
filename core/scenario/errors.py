"""The single exception type of ``core.scenario``: a refusal of an upload.

Every check in this package raises :class:`ScenarioError` with a message that
names exactly what is wrong (the entry, the option, the file), so the API can
hand it to the tenant unchanged, together with the HTTP status code that fits
the kind of problem (400 not a ZIP, 413 too big, 422 unacceptable content).
"""

from __future__ import annotations

__all__ = ["ScenarioError"]


class ScenarioError(Exception):
    """A refusal of the upload; message names what is wrong.

    Example: ``'missing file(s) referenced by run.sumocfg: route-files: a.rou.xml'``.
    ``status_code`` is 413 for size limits, 422 for content problems and 400
    when the upload is not a ZIP archive at all.
    """

    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    def __repr__(self) -> str:
        return f"ScenarioError({self.message!r}, status_code={self.status_code})"
