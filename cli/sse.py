"""Server-sent events as a client reads them: the CLI's `logs --follow`, and the tests of the stream."""
from __future__ import annotations

from typing import Iterable, Iterator


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str | None, str]]:
    """(event, id, data) for each complete server-sent event; one cut short by a dropped stream is not
    yielded, so a resumed stream sends it whole again."""
    event, event_id, data = "message", None, []
    for line in lines:
        if not line:
            if data:
                yield event, event_id, "\n".join(data)
            event, event_id, data = "message", None, []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
