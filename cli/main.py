"""The tenant's command line: submit a scenario with an upload progress bar,
follow it, list jobs, read a log and download results.

Configuration comes from ``SUMO_K8_URL`` and ``SUMO_K8_API_KEY`` (or the
``--url`` / ``--api-key`` options; the key is never printed, not even as the
option's default in ``--help``).  Every command talks to the REST API only; a
service that cannot be reached is one line on stderr and exit code 2.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from cli.sse import sse_events

app = typer.Typer(help="Run SUMO scenarios on a sumo-k8 service.", no_args_is_help=True)
console = Console(stderr=True)
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}
POLL_SECONDS = 1.0
#: A log stream without a byte for this long is taken as dropped (the service pings every 15 s).
STREAM_READ_TIMEOUT = 60.0
#: How long ``logs --follow`` keeps trying to resume a dropped stream.
RECONNECT_SECONDS = 300.0


class Options:
    url: str = ""
    api_key: str = ""


@app.callback()
def configure(
    url: str = typer.Option("http://127.0.0.1:8000", envvar="SUMO_K8_URL", help="API base URL"),
    api_key: str = typer.Option("", envvar="SUMO_K8_API_KEY", show_default=False, help="Your API key"),
) -> None:
    Options.url, Options.api_key = url.rstrip("/"), api_key


@contextlib.contextmanager
def client() -> Iterator[httpx.Client]:
    """An authenticated client for the service; a transport failure ends the command with exit code 2."""
    if not Options.api_key:
        console.print("[red]no API key: set SUMO_K8_API_KEY or pass --api-key[/red]")
        raise typer.Exit(2)
    try:
        with httpx.Client(base_url=Options.url, headers={"Authorization": f"Bearer {Options.api_key}"},
                          timeout=60) as c:
            yield c
    except httpx.TransportError as exc:
        console.print(f"[red]cannot reach {Options.url}: {exc or type(exc).__name__}[/red]")
        raise typer.Exit(2) from None


def check(response: httpx.Response) -> dict:
    if response.status_code >= 400:
        console.print(f"[red]{response.status_code}: {_detail(response)}[/red]")
        raise typer.Exit(1)
    return response.json()


def _detail(response: httpx.Response) -> str:
    """What the service said was wrong (its ``detail``), or the body as it is (e.g. a proxy's page)."""
    try:
        return str(response.json().get("detail"))
    except (ValueError, AttributeError):
        return response.text


def _upload_with_progress(path: Path, progress: Progress):
    task = progress.add_task(f"uploading {path.name}", total=path.stat().st_size)
    with open(path, "rb") as fh:
        while chunk := fh.read(64 * 1024):
            progress.update(task, advance=len(chunk))
            yield chunk


@app.command()
def submit(
    archive: Path = typer.Argument(..., exists=True, dir_okay=False, help="ZIP with the scenario"),
    scenario_id: str = typer.Option(None, help="A name for the scenario (default: the file name)"),
    cpu: int = typer.Option(1, min=1),
    memory_gi: int = typer.Option(1, min=1),
    config_file: str = typer.Option(None, help="Which .sumocfg, when there are several"),
    idempotency_key: str = typer.Option(None, help="Retry-safe submission key"),
    wait: bool = typer.Option(False, help="Follow the job until it ends"),
) -> None:
    """Upload a scenario and queue it."""
    boundary = "sumo-k8-" + os.urandom(8).hex()
    fields = {"scenario_id": scenario_id or archive.stem, "cpu_request": str(cpu), "memory_gi": str(memory_gi)}
    if config_file:
        fields["config_file"] = config_file
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    )
    head += f'--{boundary}\r\nContent-Disposition: form-data; name="sumo_files"; filename="{archive.name}"\r\nContent-Type: application/zip\r\n\r\n'.encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    with Progress(*Progress.get_default_columns()[:2], BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console) as progress:
        def body():
            yield head
            yield from _upload_with_progress(archive, progress)
            yield tail

        with client() as c:
            job = check(c.post("/jobs", content=body(), headers=headers))
    console.print(f"job [bold]{job['job_id']}[/bold] {job['status']} ({job['config_file']})")
    print(job["job_id"])
    if wait:
        _follow(job["job_id"])


def _away(response: httpx.Response) -> float | None:
    """Seconds to wait when the service says it cannot serve now (503 with Retry-After), else None."""
    if response.status_code != 503:
        return None
    retry_after = response.headers.get("Retry-After", "")
    return float(retry_after) if retry_after.isdigit() else POLL_SECONDS


def _follow(job_id: str, timeout: float = 86400) -> dict:
    """Poll the job (cheaply: If-None-Match) until it ends; a service that is away for a while
    (unreachable, or 503) is waited out, up to ``timeout`` in all."""
    deadline = time.monotonic() + timeout
    etag, last = None, None
    with client() as c, console.status("waiting") as status:
        while time.monotonic() < deadline:
            try:
                r = c.get(f"/jobs/{job_id}", headers={"If-None-Match": etag} if etag else {})
            except httpx.TransportError as exc:
                status.update(f"{last or 'waiting'} (the service cannot be reached: {exc}; trying again)")
                time.sleep(POLL_SECONDS)
                continue
            if (wait := _away(r)) is not None:
                status.update(f"{last or 'waiting'} (the service is away: {_detail(r)}; trying again)")
                time.sleep(wait)
                continue
            if r.status_code != 304:
                job = check(r)
                etag = r.headers.get("ETag")
                text = job["status"] + (f" (position {job['queue_position']})" if job.get("queue_position") else "")
                text += f" — {job['pending_reason']}" if job.get("pending_reason") else ""
                if text != last:
                    status.update(text)
                    console.print(f"{job_id}: {text}")
                    last = text
                if job["status"] in TERMINAL:
                    if job.get("kpis"):
                        console.print_json(json.dumps(job["kpis"]))
                    if job["status"] != "SUCCEEDED":
                        console.print(f"[red]{job.get('error') or job['status']}[/red]")
                        raise typer.Exit(1)
                    return job
            time.sleep(POLL_SECONDS)
    raise typer.Exit(3)


@app.command("jobs")
def list_jobs(
    status: str = typer.Option(None, help="Only jobs in this state (QUEUED, RUNNING, SUCCEEDED, ...)"),
    limit: int = typer.Option(20, min=1, max=500, help="How many, newest first"),
    every: bool = typer.Option(False, "--all", help="Every job, following the pages to the end"),
) -> None:
    """List your jobs, newest first."""
    table = Table()
    table.add_column("job", no_wrap=True, min_width=36)  # ids are copied from here: never cut
    table.add_column("status", no_wrap=True, min_width=9)
    for heading in ("scenario", "submitted", "detail"):
        table.add_column(heading)
    params: dict = {"limit": limit, **({"status": status} if status else {})}
    with client() as c:
        while True:
            page = check(c.get("/jobs", params=params))
            for job in page["jobs"]:
                table.add_row(job["job_id"], job["status"], job["scenario_id"], _when(job["submitted_at"]),
                              job["error"] or job["pending_reason"] or "")
            if not (every and page["next_cursor"]):
                break
            params["cursor"] = page["next_cursor"]
    Console().print(table)


def _when(timestamp: str | None) -> str:
    """An API timestamp (ISO 8601, UTC) to the second, for a table."""
    return timestamp[:19].replace("T", " ") if timestamp else ""


@app.command()
def status(job_id: str, wait: bool = typer.Option(False, help="Follow until the job ends")) -> None:
    """Show a job."""
    if wait:
        _follow(job_id)
        return
    with client() as c:
        console.print_json(json.dumps(check(c.get(f"/jobs/{job_id}"))))


@app.command()
def logs(job_id: str, follow: bool = typer.Option(False, "--follow", "-f"), tail: int = typer.Option(None)) -> None:
    """Print a job's log (or follow it live)."""
    with client() as c:
        if not follow:
            params = {"format": "text", **({"tail": tail} if tail else {})}
            with c.stream("GET", f"/jobs/{job_id}/logs", params=params) as r:  # a log of any size, piece by piece
                if r.status_code >= 400:
                    r.read()
                    check(r)
                for piece in r.iter_bytes():
                    sys.stdout.buffer.write(piece)
            sys.stdout.flush()
            return
        _follow_log(c, job_id)


def _follow_log(c: httpx.Client, job_id: str) -> None:
    """Print the job's log as it grows, until the job ends.  A dropped stream (the service restarted, the
    network) is resumed where it broke: the id of the last event printed (a position token) goes back as
    ``Last-Event-ID``, so every line is printed once and nothing is sent twice.  While the service is away
    (503) or the tenant has as many streams open as it may (429: a crashed service's streams count until
    they expire), it waits as Retry-After says; it gives up when no stream could be opened for
    RECONNECT_SECONDS."""
    last_id, broken_since, told = None, None, False
    while True:
        wait = POLL_SECONDS
        try:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            with c.stream("GET", f"/jobs/{job_id}/logs/stream", headers=headers,
                          timeout=httpx.Timeout(30, read=STREAM_READ_TIMEOUT)) as r:
                wait = _away(r) or _too_many(r) or POLL_SECONDS
                if r.status_code >= 400 and r.status_code != 503:
                    r.read()
                    if r.status_code != 429:
                        check(r)
                    if not told:
                        console.print(f"[yellow]{_detail(r)} (waiting)[/yellow]")
                        told = True
                if r.status_code == 200:
                    broken_since = None
                    for event, event_id, data in sse_events(r.iter_lines()):
                        if event == "log":
                            # Each event is whole lines; SSE carries a CR (SUMO's progress line) as a line break.
                            sys.stdout.write(data)
                            sys.stdout.flush()
                            last_id = event_id or last_id
                        elif event == "status":
                            console.print(f"job ended: {json.loads(data)['status']}")
                            return
        except httpx.TransportError:
            pass  # resumed below
        broken_since = broken_since or time.monotonic()
        if time.monotonic() - broken_since > RECONNECT_SECONDS:
            console.print(f"[red]the log stream of {job_id} broke and could not be resumed[/red]")
            raise typer.Exit(2)
        time.sleep(min(wait, RECONNECT_SECONDS))


def _too_many(response: httpx.Response) -> float | None:
    """Seconds to wait when the tenant has too many log streams open (429 with Retry-After), else None."""
    if response.status_code != 429:
        return None
    retry_after = response.headers.get("Retry-After", "")
    return float(retry_after) if retry_after.isdigit() else POLL_SECONDS


@app.command()
def results(job_id: str, dest: Path = typer.Option(Path("."), help="Directory to download into")) -> None:
    """Download every result file of a job, verifying sizes and digests."""
    import hashlib

    with client() as c:
        listing = check(c.get(f"/jobs/{job_id}/results"))
        if not listing["collected"]:
            console.print("[yellow]results are not collected yet[/yellow]")
            raise typer.Exit(1)
        total = sum(f["size"] for f in listing["files"])
        with Progress(*Progress.get_default_columns()[:2], BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console) as progress:
            task = progress.add_task(f"{len(listing['files'])} files", total=total)
            for f in listing["files"]:
                target = result_path(dest / job_id, f["name"])
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with c.stream("GET", f["url"]) as r, open(target, "wb") as out:
                    if r.status_code >= 400:
                        r.read()
                        check(r)
                    for chunk in r.iter_bytes():
                        out.write(chunk)
                        digest.update(chunk)
                        progress.update(task, advance=len(chunk))
                if digest.hexdigest() != f["sha256"]:
                    console.print(f"[red]{f['name']}: sha256 mismatch[/red]")
                    raise typer.Exit(1)
    console.print(f"downloaded {len(listing['files'])} files to {dest / job_id}")


def result_path(folder: Path, name: str) -> Path:
    """Where a listed result file goes: inside ``folder``, whatever the name the service listed."""
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or any(p in ("..", ".") or "\\" in p for p in parts):
        console.print(f"[red]refusing a result name outside the download folder: {name!r}[/red]")
        raise typer.Exit(1)
    return folder.joinpath(*parts)


@app.command()
def cancel(job_id: str) -> None:
    """Cancel a job."""
    with client() as c:
        console.print(check(c.delete(f"/jobs/{job_id}"))["status"])


if __name__ == "__main__":
    app()
