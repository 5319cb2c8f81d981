# One image for every process of the service (API, workers, sweeper, watcher); the command picks the role.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# bubblewrap and util-linux (unshare, prlimit): the sandbox of local simulations (LOCAL_SANDBOX=on).  It needs
# the simulation workers to run as root (each run drops to a uid of its own) where user namespaces and mounts
# are allowed: a container engine's default profile forbids both (Docker: --privileged, or CAP_SYS_ADMIN with
# seccomp, AppArmor and systempaths unconfined), else LOCAL_SANDBOX=off.  Other roles run as the user below.
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bubblewrap util-linux \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml requirements.lock ./
COPY api ./api
COPY workers ./workers
COPY core ./core
COPY devstack ./devstack
COPY migrations ./migrations
COPY alembic.ini ./
RUN pip install -c requirements.lock . && useradd --uid 10001 --create-home sumo
USER 10001
EXPOSE 8000
CMD ["uvicorn", "api.app:app", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
