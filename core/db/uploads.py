"""The statements about collected_files: what a collector pod uploaded for a job (see core.db.tables)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.db.tables import collected_files as files

_UPSERT = pg_insert(files).values(
    job_id=sa.bindparam("job_id"), name=sa.bindparam("name"), size=sa.bindparam("size"),
    sha256=sa.bindparam("sha256"), uploaded_at=sa.bindparam("now"))
_UPSERT = _UPSERT.on_conflict_do_update(
    index_elements=[files.c.job_id, files.c.name],
    set_={"size": _UPSERT.excluded.size, "sha256": _UPSERT.excluded.sha256, "uploaded_at": _UPSERT.excluded.uploaded_at})
_OF_JOB = sa.select(files.c.name, files.c.size, files.c.sha256).where(files.c.job_id == sa.bindparam("job_id"))


class UploadRepository:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def record(self, job_id: str, name: str, size: int, sha256: str, now: datetime) -> None:
        """Record one received file; a re-upload of the same name replaces the row."""
        self.conn.execute(_UPSERT, {"job_id": job_id, "name": name, "size": size, "sha256": sha256, "now": now})

    def of_job(self, job_id: str) -> dict[str, dict]:
        """``{name: {"size", "sha256"}}`` of every file received for the job."""
        rows = self.conn.execute(_OF_JOB, {"job_id": job_id})
        return {r.name: {"size": int(r.size), "sha256": r.sha256} for r in rows}

    def total_size(self, job_id: str, excluding: tuple[str, ...] = ()) -> int:
        """Bytes received for the job, leaving out the files named in ``excluding``."""
        stmt = sa.select(sa.func.coalesce(sa.func.sum(files.c.size), 0)).where(files.c.job_id == job_id)
        if excluding:
            stmt = stmt.where(files.c.name.not_in(list(excluding)))
        return int(self.conn.execute(stmt).scalar_one())
