"""The whole service on one machine: what ``make run`` starts, and what tests start.

Embedded PostgreSQL and Redis (unless DATABASE_URL / REDIS_URL name existing
servers), migrations, then the API (uvicorn), the Dramatiq workers for the
control queues, the sweeper, and either the simulation workers
(EXECUTOR=local) or the Kubernetes watcher (EXECUTOR=kubernetes) — each as
its own process group so they can be stopped, or killed in recovery tests,
independently.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from devstack.services import Service, free_port, port_open, start_postgres, start_redis, wait_for

CONTROL_QUEUES = ["admission", "executor", "status", "results"]
SIM_QUEUES = ["simulations"]


def migrate(database_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    root = Path(__file__).resolve().parent.parent
    cfg = Config(str(root / "alembic.ini"))
    cfg.set_main_option("script_location", str(root / "migrations"))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")


def admin_key(data_dir: Path, env: dict) -> str:
    """ADMIN_KEY from the environment, else one generated once and kept under DATA_DIR."""
    if env.get("ADMIN_KEY"):
        return env["ADMIN_KEY"]
    path = data_dir / "admin_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text("ak-" + secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict
    log_path: Path | None
    process: subprocess.Popen | None = None

    def start(self) -> "Proc":
        out = open(self.log_path, "ab") if self.log_path else None
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True)
        return self

    def signal(self, sig: int) -> None:
        if self.process and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 20) -> None:
        if not self.process or self.process.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=timeout)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process:
            self.process.wait(timeout=20)


@dataclass
class Stack:
    data_dir: Path
    env: dict
    port: int
    services: list[Service] = field(default_factory=list)
    procs: dict[str, Proc] = field(default_factory=dict)
    #: Settings of one process only, by its name ("api", "workers", "watcher", "sweeper"): e.g. the
    #: KUBECONFIG of the ServiceAccount each Deployment of k8s/ runs as.
    process_env: dict[str, dict] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def proc(self, name: str, argv: list[str], **env: str) -> Proc:
        log_dir = self.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        proc = Proc(name, argv, {**self.env, **self.process_env.get(name, {}), **env}, None if self.env.get("SUMO_K8_LOG_TO_CONSOLE") else log_dir / f"{name}.log")
        self.procs[name] = proc
        return proc

    def start_api(self, workers: int) -> None:
        self.proc("api", [sys.executable, "-m", "uvicorn", "api.app:app", "--host", self.env["HOST"], "--port", str(self.port),
                          "--workers", str(workers), "--no-access-log", "--timeout-graceful-shutdown", "5"]).start()
        wait_for(lambda: port_open(self.port), 60, f"the API on port {self.port}")

    def start_workers(self, name: str = "workers", processes: int = 1, threads: int = 8) -> Proc:
        return self.proc(name, _dramatiq(CONTROL_QUEUES, processes, threads)).start()

    def start_simulation_workers(self, name: str = "simulations", threads: int = 2) -> Proc:
        # A simulation holds its thread for minutes: take one message per thread, never hoard messages
        # another idle process could run (Dramatiq prefetches 2 per thread by default).  The prefetch is
        # the number of unacknowledged messages a process holds, so it must be the thread count: at 1,
        # a process ran one simulation at a time whatever its threads.
        return self.proc(name, _dramatiq(SIM_QUEUES, 1, threads), dramatiq_queue_prefetch=str(threads)).start()

    def start_watcher(self, name: str = "watcher") -> Proc:
        return self.proc(name, [sys.executable, "-m", "workers.watcher"]).start()

    def start_sweeper(self) -> Proc:
        return self.proc("sweeper", [sys.executable, "-m", "workers.sweeper"]).start()

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        for service in reversed(self.services):
            service.stop()


def _dramatiq(queues: list[str], processes: int, threads: int) -> list[str]:
    return [sys.executable, "-m", "dramatiq", "workers.actors", "--processes", str(processes), "--threads", str(threads),
            "--queues", *queues, "--worker-shutdown-timeout", "10000"]


def start_stack(data_dir: Path, *, env_overrides: dict | None = None, api_workers: int | None = None,
                persistent: bool = True, fast_db: bool = False, sweeper: bool = True,
                process_env: dict[str, dict] | None = None) -> Stack:
    """Start everything; the caller owns ``stack.stop()``.  ``process_env``: settings of single processes
    (see :attr:`Stack.process_env`)."""
    from core.settings import Settings

    data_dir = data_dir.resolve()
    env = dict(os.environ)
    env.update(env_overrides or {})
    services: list[Service] = []
    stack: Stack | None = None
    try:
        if not env.get("DATABASE_URL"):
            pg = start_postgres(data_dir / "postgres", fast=fast_db)
            services.append(pg)
            env["DATABASE_URL"] = pg.url
        if not env.get("REDIS_URL"):
            redis = start_redis(data_dir / "redis", persistent=persistent)
            services.append(redis)
            env["REDIS_URL"] = redis.url
        env.setdefault("DATA_DIR", str(data_dir))
        env["ADMIN_KEY"] = admin_key(data_dir, env)
        env.setdefault("HOST", "127.0.0.1")
        # An idle consumer's longest wait (a wake-up ends it sooner, core/broker.py): paces acks and delayed messages.
        env.setdefault("dramatiq_worker_timeout", "100")
        env.setdefault("PYTHONUNBUFFERED", "1")
        # HTTP metrics of every uvicorn worker, aggregated at scrape time; stale files of a previous run go.
        metrics_dir = Path(env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(data_dir / "prometheus")))
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        settings = Settings(**{k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields})
        migrate(settings.database_url)
        port = settings.port or free_port()  # PORT=0: any free port (tests run several stacks)
        env["PORT"] = str(port)
        stack = Stack(data_dir, env, port, services, process_env=dict(process_env or {}))
        stack.start_workers()
        if settings.executor == "kubernetes":
            stack.start_watcher()  # Kubernetes runs the simulations; the watcher reports on them
        else:
            stack.start_simulation_workers(threads=settings.local_max_parallel or os.cpu_count() or 1)
        if sweeper:
            stack.start_sweeper()
        stack.start_api(api_workers or settings.web_concurrency)
        return stack
    except BaseException:
        # Whatever started goes: a failed start (an API that never gets ready) must not leave
        # orphaned workers polling behind (they skewed later benchmarks before this).
        if stack is not None:
            stack.stop()
        else:
            for s in services:
                s.stop()
        raise
