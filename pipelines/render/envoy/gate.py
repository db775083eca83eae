"""The admission gate: refuse NEW clients while the deployment is overloaded (docs/envoy.md).

A Lua filter (package data, the same for every deployment) runs only on the RepositoryIndex
route; its parameters travel in that route's metadata (:func:`_gate_metadata`), and it asks the
site's Prometheus, reached through :data:`PROMETHEUS_CLUSTER`, for the deployment's load.
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import quote, urlsplit

from pipelines.config import names
from pipelines.config.model import Placement
from pipelines.config.model import Site as SiteConfig
from pipelines.render.envoy.proto import Json, _millis
from pipelines.render.metrics import gate_query

# Where the Envoy pod finds the Prometheus bearer token: the Kubernetes renderer mounts the site's
# prometheus.auth.secretRef Secret (key -> file "token") here. The token itself never enters the config.
PROMETHEUS_TOKEN_PATH = "/etc/sonic/prometheus/token"

LUA_FILTER = "envoy.filters.http.lua"  # filter name = per-route config key = route metadata namespace

PROMETHEUS_CLUSTER = "prometheus"


# Read once, on import: rendering reads no files.
_ADMISSION_GATE_LUA = (
    resources.files("pipelines.render").joinpath("lua/admission_gate.lua").read_text(encoding="utf-8")
)


def admission_gate_script() -> str:
    """The admission gate's Lua source (package data, identical for every deployment)."""
    return _ADMISSION_GATE_LUA


def _gate_enabled(p: Placement) -> bool:
    gate = p.envoy.admission_gate
    return gate is not None and gate.enabled


def _prometheus_url(p: Placement, site: SiteConfig, override: str | None) -> str:
    if override is not None:
        return override
    url = names.prometheus_url(p, site)
    if url is None:
        raise ValueError(f"site {site.name!r} declares no Prometheus, which the admission gate needs")
    return url


def _gate_metadata(p: Placement, site: SiteConfig, prometheus_url: str | None, token_path: str) -> Json:
    gate = p.envoy.admission_gate
    assert gate is not None
    url = urlsplit(_prometheus_url(p, site, prometheus_url))
    base = url.path.rstrip("/")
    uses_token = names.prometheus_auth(p, site) is not None
    return {
        "threshold": gate.threshold,
        "cache_for_ms": round(gate.cache_for * 1000),
        "query_timeout_ms": _millis(gate.query_timeout),
        "on_prometheus_error": gate.on_prometheus_error,
        "cluster": PROMETHEUS_CLUSTER,
        "path": f"{base}/api/v1/query?query={quote(gate_query(p), safe='')}",
        "authority": url.netloc.rsplit("@", 1)[-1],
        "token_file": token_path if uses_token else "",
    }
