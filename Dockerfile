# One image for every process of the service (API, workers, sweeper, watcher); the command picks the role.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# bubblewrap and util-linux (unshare, prlimit): the sandbox of local simulations (LOCAL_SANDBOX=on).  The
# simulations container runs as root (each run drops to a uid of its own) with user namespaces and mounts
# allowed (e.g. docker run --cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt
# apparmor=unconfined); every other role runs as the unprivileged user below.
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
