# One image for every process of the service (API, workers, sweeper, watcher); the command picks the role.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
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
