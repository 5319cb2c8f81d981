"""A request's body as a blocking file-like, for a use case that streams it on a thread of its own.

The object store's uploads pull from a file-like (``put_stream``), and they block; the body arrives on the event
loop.  :func:`run_with_body` runs the use case on a small pool of its own (``UPLOAD_THREADS``), so long uploads
never hold the threads every other request needs (api.threads), and hands it a :class:`RequestBody` whose
``read`` waits for the next chunk from the loop.  Memory stays bounded by the chunks in flight (the server stops
reading the socket while they wait).
"""
from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from starlette.requests import ClientDisconnect, Request

T = TypeVar("T")
#: Uploads one API process streams at once; more wait for a thread (the client's request waits with them).
UPLOAD_THREADS = 4
#: Seconds one read waits for the next chunk before the upload is given up.
READ_TIMEOUT = 120.0

_pool: ThreadPoolExecutor | None = None


class RequestBody:
    """``read(n)``: up to ``n`` bytes of the body (b"" at its end), from a thread other than the loop's."""

    def __init__(self, request: Request, loop: asyncio.AbstractEventLoop) -> None:
        self._chunks = request.stream().__aiter__()
        self._loop = loop
        self._buffer = memoryview(b"")
        self._done = False

    async def _next(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except (StopAsyncIteration, ClientDisconnect):  # a client gone mid-body: the body ends short (refused)
            self._done = True
            return b""

    def read(self, size: int = -1) -> bytes:
        while not self._buffer and not self._done:
            self._buffer = memoryview(asyncio.run_coroutine_threadsafe(self._next(), self._loop).result(READ_TIMEOUT))
        if size is None or size < 0:
            size = len(self._buffer)
        out, self._buffer = bytes(self._buffer[:size]), self._buffer[size:]
        return out

    def readable(self) -> bool:
        return True


async def run_with_body(request: Request, fn: Callable[..., T], *args) -> T:
    """``fn(*args, body)`` on the upload pool, ``body`` reading ``request``'s body as it arrives."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=UPLOAD_THREADS, thread_name_prefix="api-upload")
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, functools.partial(fn, *args, RequestBody(request, loop)))
