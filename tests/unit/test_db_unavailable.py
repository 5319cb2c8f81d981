"""Which database failures mean "PostgreSQL is away, try again" (the API's 503) and which stay errors.

The real thing (PostgreSQL killed mid-run) is tests/integration/test_recovery.py; here the classification of
the driver's errors, including SQLSTATEs a running server would send.
"""
from __future__ import annotations

import psycopg2
import psycopg2.errors
import pytest
import sqlalchemy as sa

from core.db.uow import DatabaseUnavailable, _reachable


class ServerError(psycopg2.OperationalError):
    """A driver error carrying a server's SQLSTATE (psycopg2's own only get one from a live server)."""

    def __init__(self, pgcode: str) -> None:
        super().__init__(pgcode)
        self.code = pgcode

    @property
    def pgcode(self):  # noqa: D102
        return self.code


def failing(orig: Exception, kind=sa.exc.OperationalError, invalidated: bool = False):
    return kind("SELECT 1", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize("error", [
    failing(psycopg2.OperationalError("connection to server failed: Connection refused")),
    failing(psycopg2.InterfaceError("connection already closed"), kind=sa.exc.InterfaceError),
    failing(ServerError("57P01")),   # admin_shutdown
    failing(ServerError("57P03")),   # cannot_connect_now: starting up
    failing(ServerError("08006")),   # connection_failure
    failing(ServerError("53300")),   # too_many_connections
    failing(ServerError("40P01"), invalidated=True),  # whatever the code, the connection is gone
])
def test_an_unreachable_server_is_unavailable(error):
    with pytest.raises(DatabaseUnavailable, match="PostgreSQL"):
        with _reachable():
            raise error


@pytest.mark.parametrize("error", [
    failing(psycopg2.errors.DeadlockDetected()),
    failing(ServerError("40001")),   # serialization_failure: an answer, retried by its caller
    failing(ServerError("22P02")),   # invalid_text_representation: a bad statement
    failing(psycopg2.errors.UniqueViolation(), kind=sa.exc.IntegrityError),
])
def test_an_answer_from_the_server_stays_an_error(error):
    with pytest.raises(sa.exc.DBAPIError) as raised:
        with _reachable():
            raise error
    assert raised.value is error
