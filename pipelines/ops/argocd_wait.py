"""Wait until an Argo CD Application has synced a given commit and is healthy.

Reads ``applications.argoproj.io`` through the Kubernetes API with the official ``kubernetes``
client (``CustomObjectsApi.get_namespaced_custom_object``): only ``get`` is needed, which is
all the rollout's ServiceAccount may do there. Argo CD itself is never called, so no Argo CD
token exists anywhere.

Every site's Applications follow one GitOps branch, so the revision an Application reports is
the branch head Argo CD last compared against: after a neighbour's rollout pushed on top of ours
it is their commit, which contains ours. "Our revision" is therefore any commit that contains
the rollout's commit (given a ``contains`` oracle, e.g. :class:`pipelines.ops.git.Descendants`
over a working copy of the branch); without one, only our commit itself.

Verdicts, in the order they are decided on each poll:

- the Application reports a sync operation for our revision that ``Failed``/``Error`` -> failed;
- it has synced our revision and its health is ``Degraded`` -> degraded;
- it has synced our revision (``Synced``), health ``Healthy``, no operation running -> healthy;
- anything else (not found yet, ``OutOfSync``, an older revision, ``Progressing``, API hiccups)
  -> keep polling until the deadline -> timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

GROUP = "argoproj.io"
VERSION = "v1alpha1"
PLURAL = "applications"
REQUEST_TIMEOUT = 10.0  # seconds for one API call

Verdict = Literal["healthy", "degraded", "failed", "timeout"]


class KubernetesAccessError(Exception):
    """The API refused us (401/403) or no configuration was found: waiting longer cannot help."""


@dataclass(frozen=True)
class AppState:
    """The parts of an Application's status a rollout decides on."""

    found: bool
    sync: str = "Unknown"  # Synced | OutOfSync | Unknown
    revision: str = ""  # commit Argo CD compared against
    health: str = "Unknown"  # Healthy | Progressing | Degraded | Suspended | Missing | Unknown
    health_message: str = ""
    operation: str = ""  # Running | Succeeded | Failed | Error | Terminating | ""
    operation_revision: str = ""
    operation_message: str = ""

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> AppState:
        status = obj.get("status") or {}
        sync = status.get("sync") or {}
        health = status.get("health") or {}
        op = status.get("operationState") or {}
        return cls(
            found=True,
            sync=str(sync.get("status") or "Unknown"),
            revision=str(sync.get("revision") or ""),
            health=str(health.get("status") or "Unknown"),
            health_message=str(health.get("message") or ""),
            operation=str(op.get("phase") or ""),
            operation_revision=str(((op.get("syncResult") or {}).get("revision")) or ""),
            operation_message=str(op.get("message") or ""),
        )

    def describe(self) -> str:
        if not self.found:
            return "not found (yet)"
        parts = [f"sync={self.sync}", f"health={self.health}"]
        if self.revision:
            parts.append(f"revision={self.revision[:12]}")
        if self.operation:
            parts.append(f"operation={self.operation}")
        message = self.operation_message or self.health_message
        return " ".join(parts) + (f": {message}" if message else "")


@dataclass(frozen=True)
class WaitResult:
    verdict: Verdict
    state: AppState
    polls: int

    @property
    def ok(self) -> bool:
        return self.verdict == "healthy"


#: Does the commit given (a full SHA Argo CD reported) contain the rollout's commit?
Contains = Callable[[str], bool]


def judge(state: AppState, revision: str | None, contains: Contains | None = None) -> Verdict | None:
    """The verdict one observation allows, or None to keep waiting.

    ``contains`` widens "our revision" from ``revision`` itself to any commit that contains it.
    """
    if not state.found:
        return None

    def ours(rev: str) -> bool:
        if revision is None:
            return True
        if not rev:
            return False
        if rev.startswith(revision) or revision.startswith(rev):
            return True
        return contains is not None and contains(rev)

    if state.operation in ("Failed", "Error") and ours(state.operation_revision or state.revision):
        return "failed"
    if not ours(state.revision):
        return None  # Argo CD has not looked at our commit yet
    if state.health == "Degraded":
        return "degraded"
    if (
        state.sync == "Synced"
        and state.health == "Healthy"
        and state.operation not in ("Running", "Terminating")
    ):
        return "healthy"
    return None


def api_from_config(kubeconfig: str | None = None, context: str | None = None) -> k8s.CustomObjectsApi:
    """A CustomObjectsApi from the pod's ServiceAccount, or else from a kubeconfig file."""
    try:
        if kubeconfig is None and context is None:
            try:
                k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
            except k8s_config.ConfigException:
                k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
        else:
            k8s_config.load_kube_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError) as exc:
        raise KubernetesAccessError(f"no Kubernetes configuration: {exc}") from exc
    return k8s.CustomObjectsApi()


def read_application(api: k8s.CustomObjectsApi, namespace: str, name: str) -> AppState:
    """One GET of the Application; a missing one is ``found=False`` (an ApplicationSet may be slow)."""
    try:
        obj = api.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as exc:
        if exc.status == 404:
            return AppState(found=False)
        if exc.status in (401, 403):
            raise KubernetesAccessError(
                f"reading Application {namespace}/{name} was refused (HTTP {exc.status}): the "
                "ServiceAccount needs get on applications.argoproj.io in that namespace"
            ) from exc
        raise
    if not isinstance(obj, dict):
        raise ApiException(status=0, reason=f"unexpected answer for Application {namespace}/{name}")
    return AppState.from_object(obj)


def wait_for_application(
    api: k8s.CustomObjectsApi,
    namespace: str,
    name: str,
    *,
    revision: str | None = None,
    contains: Contains | None = None,
    timeout: float = 900.0,
    interval: float = 10.0,
    on_poll: Callable[[AppState], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitResult:
    """Poll until :func:`judge` decides or ``timeout`` seconds pass.

    Transient API failures (5xx, connection errors) count as "no news" and polling continues;
    a refusal (401/403) raises :class:`KubernetesAccessError` at once.
    """
    deadline = clock() + timeout
    state = AppState(found=False)
    polls = 0
    while True:
        polls += 1
        try:
            state = read_application(api, namespace, name)
        except ApiException as exc:  # 5xx and friends: the API server is having a moment
            state = AppState(found=False, health_message=f"API error HTTP {exc.status}")
        except Urllib3Error as exc:
            state = AppState(found=False, health_message=f"API unreachable: {type(exc).__name__}")
        if on_poll is not None:
            on_poll(state)
        verdict = judge(state, revision, contains)
        if verdict is not None:
            return WaitResult(verdict, state, polls)
        if clock() + interval > deadline:
            return WaitResult("timeout", state, polls)
        sleep(interval)
