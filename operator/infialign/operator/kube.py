"""The operator's few calls to the Kubernetes API: create children, delete a Job, patch the run's status,
post an Event, and GET a Job before declaring it missing. Everything else comes from Kopf's watch
streams and indexes (no LIST calls).

Why the synchronous `kubernetes` client in a thread pool, and not `kubernetes_asyncio` or Kopf's
helpers: it is already a pinned dependency of the operator image; the call volume is a handful per
step transition, so threads are no bottleneck; and Kopf's API helpers live in `kopf._cogs`, which is
private with no stability promise. Generic path-based calls with dict bodies avoid the client's model
(de)serialisation: what the builders return is what goes on the wire.

Errors carry retry semantics (house rule 7): 409 on create → `AlreadyExists` (the deterministic name
means "done before"), 404 → `NotFound`, 400/422 → `Rejected` (the object is invalid; retrying cannot
help), everything transient (5xx, 429, 401/403 while RBAC is fixed, network) → `kopf.TemporaryError`.
Messages from the server are cut to 256 characters, as Kopf does, to keep payloads out of logs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any, Final

import kopf
import kubernetes.client
import kubernetes.config
import urllib3.exceptions
from infialign.pipeline.api import API_VERSION, KIND, PLURAL, truncate
from kubernetes.client.exceptions import ApiException

__all__ = ["KubeClient", "ApiError", "AlreadyExists", "NotFound", "Rejected", "load_configuration", "USER_AGENT"]

log = logging.getLogger(__name__)

_PLURALS: Final = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Service"): "services",
    ("v1", "Event"): "events",
    ("batch/v1", "Job"): "jobs",
    (API_VERSION, KIND): PLURAL,
}
_OBJECT_RESPONSES: Final = {200: "object", 201: "object", 202: "object"}
_SERVER_TEXT_LIMIT: Final = 256
USER_AGENT: Final = "infialign-operator/0.1"
_HOST: Final = socket.gethostname()


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class AlreadyExists(ApiError):
    """409 on create: an object with this name exists."""


class NotFound(ApiError):
    """404: the object (or its namespace) is gone."""


class Rejected(ApiError):
    """400/422: the API server refuses the object as invalid. Permanent."""


def _path(api_version: str, plural: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


def _plural(api_version: str, kind: str) -> str:
    try:
        return _PLURALS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"the operator does not manage {api_version} {kind}") from None


def _server_message(e: ApiException) -> tuple[str, str]:
    reason, message = str(e.reason or ""), ""
    try:
        body = json.loads(e.body) if e.body else None
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":  # anything else is dropped: it may echo a payload
        reason = str(body.get("reason") or reason)
        message = str(body.get("message") or "")
    return reason, message[:_SERVER_TEXT_LIMIT]


def load_configuration() -> kubernetes.client.Configuration:
    """In a pod: the service account. Elsewhere: $KUBECONFIG, read now (the client reads it at import)."""
    configuration = kubernetes.client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    else:
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration)
    return configuration


class KubeClient:
    """A thin async facade over the synchronous client, calls run in a dedicated thread pool."""

    def __init__(
        self, configuration: kubernetes.client.Configuration, *, workers: int = 16, timeout: float = 30.0, retry_delay: float = 10.0
    ) -> None:
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, workers)
        self._api = kubernetes.client.ApiClient(configuration)
        self._api.user_agent = USER_AGENT  # recognisable in audit logs (and in the tests' request log)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="infialign-api")
        self._timeout = timeout
        self._retry_delay = retry_delay
        self.calls = 0  # requests sent; the benchmark divides it by transitions

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api.close()

    @property
    def executor(self) -> concurrent.futures.Executor:
        return self._pool

    # ---------------------------------------------------------------- plumbing

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        self.calls += 1
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            return self._api.call_api(
                path,
                method,
                query_params=query or [],
                header_params=headers,
                body=body,
                response_types_map=_OBJECT_RESPONSES,
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=self._timeout,
            )
        except ApiException as e:
            reason, message = _server_message(e)
            status = int(e.status or 0)
            if status == 409:
                raise AlreadyExists(status, reason, message) from e
            if status == 404:
                raise NotFound(status, reason, message) from e
            if status in (400, 422):
                raise Rejected(status, reason, message) from e
            raise kopf.TemporaryError(f"{method} {path}: {status} {reason}: {message}", delay=self._retry_delay) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise kopf.TemporaryError(f"{method} {path}: {type(e).__name__}: {str(e)[:_SERVER_TEXT_LIMIT]}", delay=self._retry_delay) from e

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    # ---------------------------------------------------------------- operations

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        path = _path(obj["apiVersion"], _plural(obj["apiVersion"], obj["kind"]), meta["namespace"])
        result: dict[str, Any] = await self._run(self._call, "POST", path, dict(obj))
        return result

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as the API server has it now, or None when it does not exist."""
        path = _path(api_version, _plural(api_version, kind), namespace, name)
        try:
            result: dict[str, Any] = await self._run(self._call, "GET", path)
        except NotFound:
            return None
        return result

    async def delete(self, api_version: str, kind: str, namespace: str, name: str, *, propagation: str = "Background") -> bool:
        """Delete; False when it was already gone. Background: the Job disappears at once and the garbage
        collector removes its pods, so a pod stuck on a lost node never blocks the next attempt."""
        path = _path(api_version, _plural(api_version, kind), namespace, name)
        try:
            await self._run(self._call, "DELETE", path, query=[("propagationPolicy", propagation)])
        except NotFound:
            return False
        return True

    async def patch_run(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of the run itself (only its metadata: the operator never edits a user's spec)."""
        path = _path(API_VERSION, PLURAL, namespace, name)
        result: dict[str, Any] = await self._run(self._call, "PATCH", path, dict(patch), content_type="application/merge-patch+json")
        return result

    async def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of the run's status subresource (lists are replaced whole, `null` deletes)."""
        path = _path(API_VERSION, PLURAL, namespace, name, "status")
        result: dict[str, Any] = await self._run(self._call, "PATCH", path, dict(patch), content_type="application/merge-patch+json")
        return result

    async def post_event(self, run: Mapping[str, str], *, reason: str, message: str, warning: bool = False) -> None:
        """An Event on the run. Best effort: a lost Event is logged, never raised."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            # an explicit unique name instead of generateName: some API emulators do not implement it
            "metadata": {"name": f"{run['name']}.{time.time_ns():x}", "namespace": run["namespace"]},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": run["name"],
                "namespace": run["namespace"],
                "uid": run.get("uid") or "",
            },
            "reason": reason,
            "message": truncate(message) or "",
            "type": "Warning" if warning else "Normal",
            "source": {"component": "infialign-operator", "host": _HOST},
            "reportingComponent": "infialign.dev/operator",
            "reportingInstance": _HOST[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.create(event)
        except (ApiError, kopf.TemporaryError) as e:
            log.debug("could not post event %s on %s/%s: %s", reason, run["namespace"], run["name"], e)
