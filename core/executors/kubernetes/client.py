"""How the Kubernetes executor talks to the API server: the client, its timeouts, and the outcomes
that are normal (NotFound, AlreadyExists) or mean "the API server is away" (:class:`ExecutorUnavailable`).

Every other module of the executor reaches the API through a :class:`Kube`, so a test can put a fake
behind all of them at once.
"""
from __future__ import annotations

import contextlib
import json

from kubernetes import client
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from core.executors.base import ExecutorUnavailable

MERGE = "application/merge-patch+json"
APPLY = "application/apply-patch+yaml"
FIELD_MANAGER = "sumo-k8"
#: Seconds an API request answered from the API server may wait for it (connect, read): a server that is
#: away must not hold a request thread for long.
READ_TIMEOUT = (5, 20)
#: Connections kept per API server: at least the threads that call it at once (the control workers), or
#: urllib3 discards the extra connections after each call and every call pays a new TLS handshake.
CONNECTION_POOL_MAXSIZE = 32
#: How the ResourceQuota admission plugin words its refusals (an RBAC 403 says "cannot create …").
QUOTA_REFUSALS = ("exceeded quota", "status unknown for quota", "failed quota", "insufficient quota")


def api_client_from(settings) -> client.ApiClient:
    """KUBECONFIG if set, else the in-cluster config, else ~/.kube/config."""
    from kubernetes import config

    cfg = client.Configuration()  # this client's own, so the pool size below touches no other
    if settings.kubeconfig:
        config.load_kube_config(config_file=settings.kubeconfig, client_configuration=cfg, persist_config=False)
    else:
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException:
            config.load_kube_config(client_configuration=cfg, persist_config=False)
    cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize or 0, CONNECTION_POOL_MAXSIZE)
    return client.ApiClient(configuration=cfg)


class Kube:
    """The API groups the executor uses, on one client."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.net = client.NetworkingV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)


def reason(exc: ApiException) -> str | None:
    """The Status reason of an API error (AlreadyExists, Conflict, …), if the body carries one."""
    try:
        return json.loads(exc.body or "{}").get("reason")
    except (ValueError, AttributeError):
        return None


def allowing(fn, *args, allow=(404, 409), **kw):
    """Call the API; ``allow``ed statuses (NotFound, AlreadyExists) are normal outcomes and give None."""
    try:
        return fn(*args, **kw)
    except ApiException as exc:
        if exc.status in allow:
            return None
        raise


@contextlib.contextmanager
def api_server():
    """Turn "the API server is away" (no connection, a timeout, a 5xx or 429 answer) into
    :class:`ExecutorUnavailable` for a caller answering a request; any other refusal stays what it is."""
    try:
        yield
    except HTTPError as exc:
        raise ExecutorUnavailable("the Kubernetes API server cannot be reached; try again shortly") from exc
    except ApiException as exc:
        if exc.status != 429 and not 500 <= (exc.status or 0) < 600:
            raise
        raise ExecutorUnavailable(f"the Kubernetes API server cannot serve this now ({exc.status} {exc.reason}); "
                                  "try again shortly") from exc


def json_body(resp) -> dict:
    """The body of a ``_preload_content=False`` response as a dict (the connection goes back to the pool)."""
    try:
        return json.loads(resp.data)
    finally:
        resp.release_conn()


def drain(resp) -> None:
    """Read and release a ``_preload_content=False`` response whose body is not needed."""
    try:
        resp.data  # noqa: B018 — reads the body so the connection can be reused
    finally:
        resp.release_conn()


def quota_refusal(exc: ApiException) -> bool:
    """A 403 from quota admission (the job waits for quota), not from authorization (a deployment error)."""
    return exc.status == 403 and any(phrase in api_message(exc) for phrase in QUOTA_REFUSALS)


def api_message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body).get("message") or exc.reason
    except (TypeError, ValueError):
        return str(exc.reason)
