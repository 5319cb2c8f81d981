"""Request and response bodies: the API contract (these field names are the contract)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from core.domain.admission import gigabytes
from core.domain.tenants import TENANT_ID_PATTERN

LIMIT = dict(ge=1, le=10_000)
STORED_GB = dict(gt=0, le=1_000_000)


class TenantCreate(BaseModel):
    tenant_id: str = Field(..., min_length=1, max_length=58, examples=["acme"])
    max_cpu: int | None = Field(None, description="Default: DEFAULT_MAX_CPU", **LIMIT)
    max_memory_gi: int | None = Field(None, description="Default: DEFAULT_MAX_MEMORY_GI", **LIMIT)
    max_concurrent_jobs: int | None = Field(None, description="Default: MAX_CONCURRENT_JOBS_PER_TENANT", **LIMIT)
    max_stored_gb: float | None = Field(None, description="Most GB (10^9 bytes) of inputs, results and logs kept; "
                                                          "default: DEFAULT_MAX_STORED_GB", **STORED_GB)


class TenantPatch(BaseModel):
    max_cpu: int | None = Field(None, **LIMIT)
    max_memory_gi: int | None = Field(None, **LIMIT)
    max_concurrent_jobs: int | None = Field(None, **LIMIT)
    max_stored_gb: float | None = Field(None, **STORED_GB)


class RegenerateKey(BaseModel):
    tenant_id: str = Field(..., min_length=1, max_length=63, pattern=TENANT_ID_PATTERN)


class Tenant(BaseModel):
    tenant_id: str
    namespace: str
    max_cpu: int
    max_memory_gi: int
    max_concurrent_jobs: int
    max_stored_gb: float = Field(..., description="Most GB (10^9 bytes) of inputs, results and logs the tenant keeps "
                                                  "(a submission past it: 413)")
    created_at: datetime


class TenantWithKey(Tenant):
    api_key: str = Field(..., description="Shown once; only its hash is stored")


class TenantList(BaseModel):
    tenants: list[Tenant]
    next_cursor: str | None


class JobAccepted(BaseModel):
    job_id: str
    status: str
    config_file: str


class Job(BaseModel):
    job_id: str
    scenario_id: str
    status: str = Field(..., description="QUEUED, ADMITTED, PENDING, RUNNING, COLLECTING (the run ended; its results "
                                         "and log are being stored), then SUCCEEDED, FAILED or CANCELLED")
    outcome: str | None = Field(None, description="How the run ended (SUCCEEDED, FAILED, CANCELLED): the status a "
                                                  "COLLECTING job takes once its results are stored")
    cpu_request: int
    memory_gi: int
    config_file: str
    submitted_at: datetime
    admitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    error: str | None
    queue_position: int | None = None
    pending_reason: str | None
    kpis: dict[str, Any] | None
    input_deleted_at: datetime | None = Field(None, description="When the input archive was deleted (retention: "
                                                                "INPUT_RETENTION_DAYS, or DELETE /jobs/{id}/data)")
    results_deleted_at: datetime | None = Field(None, description="When the results and log were deleted (retention: "
                                                                  "RESULT_RETENTION_DAYS, or DELETE /jobs/{id}/data)")
    data_deleted_at: datetime | None = Field(None, description="When the tenant deleted all of the job's data "
                                                               "(DELETE /jobs/{id}/data)")


class AdminJob(Job):
    tenant_id: str


class JobList(BaseModel):
    jobs: list[Job]
    next_cursor: str | None


class AdminJobList(BaseModel):
    jobs: list[AdminJob]
    next_cursor: str | None


class JobLogs(BaseModel):
    job_id: str
    logs: str


class ResultFile(BaseModel):
    name: str
    size: int
    sha256: str
    url: str


class Results(BaseModel):
    job_id: str
    status: str
    storage_type: str
    collected: bool
    files: list[ResultFile]
    results_deleted_at: datetime | None = Field(None, description="When the results were deleted (nothing is listed then)")


class Error(BaseModel):
    detail: Any


JOB_FIELDS = list(Job.model_fields)


def job_json(row: dict, admin: bool = False) -> dict:
    out = {name: row.get(name) for name in JOB_FIELDS}
    out["job_id"] = str(row["job_id"])
    if admin:
        out["tenant_id"] = row["tenant_id"]
    return out


def tenant_json(row: dict) -> dict:
    out = {name: row.get(name) for name in Tenant.model_fields}
    out["max_stored_gb"] = gigabytes(row["max_stored_bytes"])
    return out
