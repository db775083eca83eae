"""The live cluster, read (and dry-run applied to) with the official ``kubernetes`` client.

Every call goes through the client's ``DynamicClient.request``: one code path for built-in and
custom kinds, stable across the client's releases (the generated ``ApiClient.call_api`` under it
has changed signature between them), and plain JSON answers the checks turn into typed facts themselves. Discovery
(which kinds each API group/version serves) is read once per group/version and kept.

Errors: :class:`ClusterUnavailable` when there is no configuration, the server cannot be reached
or refuses our credentials (the CLI's exit 2); :class:`ApiError` for one refused request, which
the runner turns into a failed check.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

REQUEST_TIMEOUT = 15.0  # seconds per API call: a doctor that hangs helps nobody
# Argo CD and Kustomize send this too: the server decides ownership of every field it applies.
FIELD_MANAGER = "sonic-doctor"


class ClusterUnavailable(Exception):
    """No usable configuration, or the API server cannot be reached or refuses the credentials."""


class ApiError(Exception):
    """One request the API server refused: its HTTP status and the server's own message."""

    def __init__(self, status: int, message: str, path: str = "") -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.path = path


@dataclass(frozen=True)
class ApiResource:
    """One kind as discovery serves it: its REST name (plural) and whether it lives in namespaces."""

    kind: str
    plural: str
    namespaced: bool


class Cluster:
    """One API server, reached with a kubeconfig (or, inside a pod, its ServiceAccount)."""

    def __init__(self, api_client: Any, dynamic: Any, cache_dir: tempfile.TemporaryDirectory[str]) -> None:
        self._api = api_client
        self._dyn = dynamic
        self._cache_dir = cache_dir
        self._groups: dict[str, tuple[str, ...]] | None = None
        self._resources: dict[str, dict[str, ApiResource] | None] = {}

    @classmethod
    def connect(cls, kubeconfig: Path | None = None, context: str | None = None) -> Cluster:
        """Load the configuration and prove the server answers (GET /version)."""
        from kubernetes import client
        from kubernetes.dynamic import DynamicClient

        api_client = _load_config(kubeconfig, context)
        try:
            client.VersionApi(api_client).get_code(_request_timeout=REQUEST_TIMEOUT)
        except Exception as exc:  # refused, unresolvable, TLS, 401: this cluster cannot be used, say why
            api_client.close()
            raise ClusterUnavailable(
                f"cannot use the API server at {api_client.configuration.host}: {_why(exc)}"
            ) from exc
        # The dynamic client caches discovery in a file; keep it ours and remove it with us
        # (a shared /tmp cache can be stale, and belongs to whoever wrote it first).
        cache_dir = tempfile.TemporaryDirectory(prefix="sonic-doctor-")
        try:
            dynamic = DynamicClient(  # type: ignore[no-untyped-call]
                api_client, cache_file=str(Path(cache_dir.name) / "discovery.json")
            )
        except Exception as exc:  # as above: discovery is the second request it makes
            cache_dir.cleanup()
            api_client.close()
            raise ClusterUnavailable(
                f"API discovery at {api_client.configuration.host} failed: {_why(exc)}"
            ) from exc
        return cls(api_client, dynamic, cache_dir)

    @property
    def server(self) -> str:
        return str(self._api.configuration.host)

    def close(self) -> None:
        self._api.close()
        self._cache_dir.cleanup()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- requests ------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str | None = None,
        query: Sequence[tuple[str, str]] = (),
    ) -> Any:
        """One API call; the decoded JSON answer. Raises ApiError, or ClusterUnavailable when unreachable."""
        return self._call(method, path, body, content_type=content_type, query=query)[0]

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str | None = None,
        query: Sequence[tuple[str, str]] = (),
    ) -> tuple[Any, tuple[str, ...]]:
        """(decoded JSON answer, the server's Warning headers)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        params: dict[str, Any] = {
            "serialize": False,
            "_request_timeout": REQUEST_TIMEOUT,
            "query_params": list(query),
        }
        if content_type:
            params["content_type"] = content_type
        try:
            resp = self._dyn.request(method, path, body=body, **params)
        except ApiException as exc:
            raise ApiError(int(exc.status or 0), _server_message(exc.body, exc.reason), path) from exc
        except HTTPError as exc:
            raise ClusterUnavailable(
                f"the API server at {self.server} stopped answering: {_why(exc)}"
            ) from exc
        data = resp.data
        headers = resp.headers
        warnings = headers.getlist("Warning") if hasattr(headers, "getlist") else [headers.get("Warning")]
        return (json.loads(data) if data else None), tuple(_warning_text(w) for w in warnings if w)

    def get(self, path: str, *, query: Sequence[tuple[str, str]] = ()) -> Any | None:
        """GET ``path``; None when it does not exist (404)."""
        try:
            return self.request("GET", path, query=query)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, path: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        """The items of a list (a missing collection, as in a missing namespace, is empty)."""
        query = [("labelSelector", label_selector)] if label_selector else []
        answer = self.get(path, query=query)
        return list((answer or {}).get("items") or [])

    def dry_run_apply(self, path: str, body: Mapping[str, Any]) -> tuple[str, ...]:
        """Server-side apply ``body`` with ``dryRun=All``; the server's warnings. Raises ApiError on refusal.

        Admission (Pod Security, quotas, webhooks) and validation run, nothing is stored. As Argo
        CD's sync: fields unknown to the schema are refused (``fieldValidation=Strict``, kubectl's
        default), and ``force`` takes fields over from their current manager (Argo CD itself,
        on a cluster already synced).
        """
        query = [
            ("fieldManager", FIELD_MANAGER),
            ("force", "true"),
            ("dryRun", "All"),
            ("fieldValidation", "Strict"),
        ]
        return self._call(
            "PATCH", path, dict(body), content_type="application/apply-patch+yaml", query=query
        )[1]

    # --- discovery -----------------------------------------------------------------------------------

    def version(self) -> Mapping[str, Any]:
        """The server's /version answer (gitVersion, major, minor ...)."""
        return self.get("/version") or {}

    def served_versions(self) -> Mapping[str, tuple[str, ...]]:
        """API group -> the versions it serves ("" is the core group, serving v1)."""
        if self._groups is None:
            groups: dict[str, tuple[str, ...]] = {"": ("v1",)}
            for g in (self.get("/apis") or {}).get("groups") or []:
                groups[str(g["name"])] = tuple(str(v["version"]) for v in g.get("versions") or [])
            self._groups = groups
        return self._groups

    def resources(self, group_version: str) -> Mapping[str, ApiResource] | None:
        """Kind -> resource of one group/version; None when the server does not serve it."""
        if group_version not in self._resources:
            path = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
            answer = self.get(path)
            self._resources[group_version] = (
                None
                if answer is None
                else {
                    str(r["kind"]): ApiResource(str(r["kind"]), str(r["name"]), bool(r.get("namespaced")))
                    for r in answer.get("resources") or []
                    if "/" not in str(r.get("name", ""))  # subresources (status, scale) are not kinds
                }
            )
        return self._resources[group_version]

    def resource(self, api_version: str, kind: str) -> ApiResource | None:
        served = self.resources(api_version)
        return None if served is None else served.get(kind)

    def object_path(self, api_version: str, kind: str, name: str, namespace: str | None) -> str | None:
        """The REST path of one object; None when its kind is not served."""
        res = self.resource(api_version, kind)
        if res is None:
            return None
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        if res.namespaced:
            return f"{base}/namespaces/{namespace or 'default'}/{res.plural}/{name}"
        return f"{base}/{res.plural}/{name}"


def _load_config(kubeconfig: Path | None, context: str | None) -> Any:
    """An ApiClient from ``kubeconfig`` (default: $KUBECONFIG or ~/.kube/config), or in-cluster."""
    from kubernetes import client, config

    if kubeconfig is not None and not kubeconfig.is_file():
        raise ClusterUnavailable(f"--kubeconfig {kubeconfig}: no such file")
    try:
        return config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig) if kubeconfig else None, context=context, persist_config=False
        )
    except (config.ConfigException, OSError) as exc:
        # Inside a pod (an Argo step) without a kubeconfig: the pod's ServiceAccount.
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            return client.ApiClient(cfg)
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ClusterUnavailable(
            f"no usable Kubernetes configuration in {where}: {exc} (give --kubeconfig FILE, and --context NAME "
            "for a context other than the current one)"
        ) from exc


def _server_message(body: Any, reason: Any) -> str:
    """The ``message`` of a Kubernetes Status answer, else what there is."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        decoded = json.loads(body) if body else None
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and decoded.get("message"):
        return str(decoded["message"])
    return str(body or reason or "no answer")


def _warning_text(header: str) -> str:
    """``299 - "message"`` (RFC 7234 warn-code, agent, quoted text) -> ``message``."""
    parts = header.split(" ", 2)
    if len(parts) == 3 and parts[0].isdigit():
        text = parts[2].strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            return text[1:-1].replace('\\"', '"')
        return text
    return header


def _why(exc: BaseException) -> str:
    """A one-line reason, without urllib3's nested retry wrapping."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        hint = " (the credentials were refused)" if status in (401, 403) else ""
        return f"HTTP {status}: {_server_message(exc.body, exc.reason)}{hint}"
    reason = getattr(exc, "reason", None)
    return f"{type(reason or exc).__name__}: {reason or exc}"
