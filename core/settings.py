"""The one settings object, read from the environment.

Every knob of the service lives here with its default; the README's settings
table is generated from this class (``python -m core.settings``), so the two
cannot drift apart.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Values that deployment examples use where a secret goes: a service started with one of them as its
#: ADMIN_KEY would hand every tenant's data to whoever read the example.
PLACEHOLDER_SECRETS = frozenset({"change-me", "changeme", "change_me", "replace-me", "replaceme", "secret",
                                 "password", "admin", "example", "xxx", "todo", "<admin-key>", "${admin_key}"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # -- services -----------------------------------------------------------
    database_url: str = Field("", description="PostgreSQL URL; empty: `make run` starts an embedded server under DATA_DIR.")
    redis_url: str = Field("", description="Redis URL; empty: `make run` starts an embedded server under DATA_DIR.")
    data_dir: Path = Field(Path(".data"), description="Where the embedded services, work directories and local results live.")
    db_pool_min: int = Field(10, ge=1, description="Connections each process keeps open (opening one costs PostgreSQL a fork).")
    db_pool_max: int = Field(20, ge=1, description="Most connections per process; those above DB_POOL_MIN close when returned.")

    # -- HTTP -----------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8000, description="Port the API listens on.")
    web_concurrency: int = Field(2, ge=1, description="uvicorn worker processes.")
    api_threads: int = Field(8, ge=1, description="Threads per API worker for blocking calls (database, storage); more mostly contend for the GIL.")
    key_cache_seconds: float = Field(30.0, ge=0, description="How long POST /jobs may reuse a key its API worker verified (0: look it up every time); the job insert checks the key and the limits again in PostgreSQL.")
    log_level: str = Field("INFO", description="Python log level for every process.")
    cors_origins: str = Field("", description="Comma-separated origins allowed by CORS; empty: CORS off.")
    admin_key: str = Field("", description="Value of the X-Admin-Key header; empty: `make run` generates one under DATA_DIR.")

    # -- limits ---------------------------------------------------------------
    max_file_size_mb: int = Field(50, ge=1, description="Largest accepted upload (compressed), checked while it streams in.")
    max_uncompressed_mb: int = Field(500, ge=1, description="Largest total uncompressed size of an archive.")
    max_archive_entries: int = Field(2000, ge=1, description="Most entries in an archive.")
    max_compression_ratio: int = Field(200, ge=1, description="Largest uncompressed/compressed ratio of an entry and of the archive.")
    max_job_duration_hours: float = Field(24.0, gt=0, description="Deadline of a run; it is stopped and FAILED past it.")
    max_concurrent_jobs_per_tenant: int = Field(5, ge=1, description="Default max_concurrent_jobs of a new tenant.")
    default_max_cpu: int = Field(8, ge=1, description="Default max_cpu of a new tenant.")
    default_max_memory_gi: int = Field(16, ge=1, description="Default max_memory_gi of a new tenant.")
    max_log_streams_per_tenant: int = Field(8, ge=1, description="Most log streams (`GET /jobs/{id}/logs/stream`) a tenant may have open at once, counted in Redis over every API worker; the next one is refused with 429 and Retry-After.")
    log_stream_heartbeat_seconds: float = Field(10.0, gt=0, description="How often an open log stream renews its place in that count; a place not renewed for 3 times this long (its API worker crashed) stops counting.")
    default_max_stored_gb: float = Field(50.0, gt=0, description="Default max_stored_gb of a new tenant: the most bytes (1 GB = 10^9) its inputs, results and logs may take in the store; a submission that would pass it is refused with 413.")
    max_queued_jobs_per_tenant: int = Field(500, ge=1, description="Most QUEUED jobs a tenant may have; a submission past it is refused with 429 and Retry-After.")
    submit_rate_per_second: float = Field(20.0, ge=0, description="Submissions (POST /jobs) per second a tenant may sustain, counted in Redis over every API worker; past it (and SUBMIT_BURST) 429 with Retry-After. 0: no limit.")
    submit_burst: int = Field(100, ge=1, description="Submissions a tenant may send at once above SUBMIT_RATE_PER_SECOND (the token bucket's size).")

    # -- execution ------------------------------------------------------------
    executor: Literal["local", "kubernetes"] = Field("local", description="Where simulations run.")
    local_max_parallel: int = Field(0, ge=0, description="Machine-wide cap on concurrent local simulations; 0: number of CPUs.")
    sumo_binary: str = Field("", description="Path of `sumo` for the local executor; empty: the eclipse-sumo wheel's.")
    log_tail_lines: int = Field(20, ge=1, description="Lines of the log attached to a FAILED job's error.")
    local_sandbox: Literal["on", "off"] = Field("on", description=(
        "`on`: every local simulation runs in a bubblewrap sandbox under its own unprivileged uid, without network, "
        "environment or view of the host beyond its run folder (needs root, bubblewrap and user namespaces; the "
        "simulation workers refuse to start without them). `off`: simulations run unconfined as the worker's own "
        "user (resource limits and the output caps still apply); `/ready` says so."))
    local_sandbox_uid_base: int = Field(1_900_000_000, ge=1000, le=4_000_000_000, description=(
        "First of the 1024 uids (and gids) of sandboxed runs: each run leases one of them for itself, machine-wide "
        "(locks in /run/sumo-k8/sandbox-uids, shared by every service on the machine), so two runs can neither "
        "signal nor read each other and process limits count per run. Pick a range no account or container on the "
        "machine uses; the default lies above the ranges distributions and container engines hand out, below 2^31."))
    max_output_mb: int = Field(4096, ge=1, description=(
        "Most a run may write into its run folder in total (each file counted in whole 4 KiB blocks), also the "
        "largest single file; past it the run is stopped and FAILED, and what fits is collected. Room for hours of per-vehicle output (FCD, "
        "tripinfo, emissions) of a city-scale scenario, more as `.xml.gz`; a run writing more is more likely a "
        "runaway than research."))
    max_log_mb: int = Field(256, ge=1, description=(
        "Most console output (the job's log) a run may produce; past it the log stops growing and the run "
        "is stopped and FAILED. SUMO's console carries progress and warnings, which stay far below this even when "
        "a congested run warns about every teleport; `--no-warnings` or `--no-step-log` shorten it."))

    # -- kubernetes executor ---------------------------------------------------------
    kubeconfig: str = Field("", description="Kubeconfig for EXECUTOR=kubernetes; empty: in-cluster config, else ~/.kube/config.")
    sumo_image: str = Field("ghcr.io/eclipse-sumo/sumo:latest", description="Image of the simulation pods.")
    job_backoff_limit: int = Field(0, ge=0, description="backoffLimit of each Kubernetes Job.")
    job_ttl_seconds: int = Field(120, ge=0, description="ttlSecondsAfterFinished of each Kubernetes Job.")
    result_storage_size_gi: int = Field(10, ge=1, description="Size of each tenant's results PVC.")
    storage_class: str = Field("", description="StorageClass of the results PVCs; empty: the cluster default.")
    controller_namespace: str = Field("sumo-k8-system", description="Namespace of the controller itself (the watcher's Lease lives there).")
    watch_resync_seconds: float = Field(30.0, gt=0, description="How often the watcher re-lists everything to catch missed events.")
    collect_url: str = Field("http://sumo-k8-api.sumo-k8-system.svc", description="Base URL of the API as a collector pod reaches it: it uploads each result file to PUT <COLLECT_URL>/internal/jobs/{id}/files/{name}.")
    collect_token_secret: str = Field("", description="Key of the per-job upload tokens of collector pods (HMAC-SHA256 of the job id); empty: derived from ADMIN_KEY, so every process that shares ADMIN_KEY agrees.")

    # -- results ---------------------------------------------------------------
    result_storage_type: Literal["local", "pvc", "s3", "gcs", "azure"] = Field("local", description="Where inputs, results and logs are kept.")
    result_storage_path: Path = Field(Path(""), description="Root of local/pvc storage; empty: DATA_DIR/storage.")
    s3_bucket: str = Field("sumo-k8", description="Bucket for s3 storage.")
    s3_endpoint_url: str = Field("", description="S3 endpoint (MinIO, an emulator); empty: AWS.")
    s3_region: str = Field("us-east-1", description="S3 region.")
    gcs_bucket: str = Field("sumo-k8", description="Bucket for gcs storage.")
    gcs_endpoint_url: str = Field("", description="GCS endpoint (an emulator); empty: Google.")
    gcs_project: str = Field("sumo-k8", description="GCS project.")
    azure_container: str = Field("sumo-k8", description="Blob container for azure storage.")
    azure_connection_string: str = Field("", description="Azure Storage connection string.")

    # -- queues and sweeping ----------------------------------------------------
    sweep_interval_seconds: float = Field(5.0, gt=0, description="How often the sweeper looks for lost messages.")
    sweep_grace_seconds: float = Field(15.0, gt=0, description="Age of a job without progress since its last message before the sweeper re-sends it (QUEUED, ADMITTED; with EXECUTOR=local also PENDING and RUNNING) or, with EXECUTOR=kubernetes, asks the cluster how it is (PENDING, RUNNING, and ADMITTED ones whose start it re-sent: a status event may have been lost); doubles per re-send, up to 64 times.")
    redis_heartbeat_timeout_ms: int = Field(15000, ge=1000, description="After this long a dead worker's messages are re-delivered.")
    pending_timeout_seconds: float = Field(900.0, gt=0, description="With EXECUTOR=kubernetes, a job PENDING this long (counted from when it became PENDING, whatever its reason since: unschedulable, an image that cannot be pulled, quota refusals) is FAILED with that reason, stopped, and frees its quota. The local executor's wait for a free simulation slot never times out.")
    collect_timeout_seconds: float = Field(3600.0, gt=0, description="A job COLLECTING this long (its run ended, its results could not be stored) is FAILED naming why.")
    input_retention_days: float = Field(30.0, ge=0, description="Days a finished job's input archive is kept (from its end); then the sweeper deletes it and the job's input_deleted_at says when. 0: kept until DELETE /jobs/{id}/data.")
    result_retention_days: float = Field(90.0, ge=0, description="Days a finished job's results and log are kept (from their collection); then the sweeper deletes them and the job's results_deleted_at says when. 0: kept until DELETE /jobs/{id}/data.")
    retention_batch: int = Field(200, ge=1, description="Most inputs, and most result sets, the sweeper deletes per pass (it passes every SWEEP_INTERVAL_SECONDS).")

    @field_validator("admin_key")
    @classmethod
    def _not_a_placeholder(cls, value: str) -> str:
        if value.strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError(f"ADMIN_KEY is the placeholder {value!r}: set a secret of your own "
                             "(e.g. openssl rand -hex 32), or leave it empty for `make run` to generate one")
        return value

    @property
    def storage_root(self) -> Path:
        return self.result_storage_path if str(self.result_storage_path) not in ("", ".") else self.data_dir / "storage"

    @property
    def work_root(self) -> Path:
        return self.data_dir / "work"

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def settings_table() -> str:
    """The README's settings table, in Markdown."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = f"`{default}`" if str(default) not in ("", ".") else "(empty)"
        rows.append(f"| `{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
