"""The Envoy Ingress: TLS whenever bearer tokens cross it, site facts, Argo CD health (issue 10, defects 7, 12, 13)."""

from __future__ import annotations

import copy
import re
import textwrap
from typing import Any

import pytest

from pipelines.config import names
from pipelines.config.model import Placement, Site
from pipelines.render.argocd import ingress_health_lua
from pipelines.render.envoy.k8s import render_envoy
from pipelines.render.errors import Unvalidated
from tests.render.support import ROOT, find, placement, placements, rendered


def _ingresses() -> list[tuple[Placement, Site, dict[str, Any]]]:
    out = [(p, s, o) for p, s in placements() for o in rendered(p) if o["kind"] == "Ingress"]
    assert len(out) >= 4
    return out


def _site_with(site: Site, **ingress: Any) -> Site:
    assert site.ingress is not None
    return site.model_copy(update={"ingress": site.ingress.model_copy(update=ingress)})


# --- TLS (defect 12) ------------------------------------------------------------------------------


def test_jwt_deployments_are_reached_only_over_tls() -> None:
    """Every Ingress of a JWT deployment lists its host under tls: a token never crosses in clear text."""
    jwt = [(p, o) for p, _, o in _ingresses() if p.envoy.auth is not None and p.envoy.auth.jwt is not None]
    assert jwt  # icecube/cnn-classifier at Nautilus
    for p, obj in jwt:
        hosts = [h for entry in obj["spec"].get("tls", []) for h in entry["hosts"]]
        assert p.envoy.ingress is not None and hosts == [p.envoy.ingress.host], p.name


def test_default_certificate_renders_a_tls_entry_without_a_secret() -> None:
    """As SuperSONIC's Nautilus values: ``tls: [{hosts: [host]}]``, the controller's default certificate.

    networking.k8s.io/v1 IngressTLS.secretName is optional; ingress-nginx
    (docs/user-guide/tls.md) uses its --default-ssl-certificate for tls entries without one.
    """
    p, site = placement("nautilus", "cnn-classifier")
    assert site.ingress is not None and site.ingress.default_certificate and not site.ingress.tls_secret
    ing = find(rendered(p), "Ingress")
    assert ing["spec"]["tls"] == [{"hosts": ["icecube-sonic.nrp-nautilus.io"]}]


def test_tls_secret_precedence() -> None:
    """The deployment's Secret, then the site's, then the default certificate; none: no tls entry."""
    p, site = placement("anvil", "particlenet-anvil")
    assert p.envoy.ingress is not None
    host = p.envoy.ingress.host

    def tls(q: Placement, s: Site) -> Any:
        return find(render_envoy(q, s, None), "Ingress")["spec"].get("tls")

    assert tls(p, site) == [{"hosts": [host], "secretName": "anvil-wildcard-tls"}]
    own = p.model_copy(
        update={
            "envoy": p.envoy.model_copy(
                update={"ingress": p.envoy.ingress.model_copy(update={"tls_secret": "mine"})}
            )
        }
    )
    assert tls(own, site) == [{"hosts": [host], "secretName": "mine"}]
    assert tls(p, _site_with(site, tls_secret=None, default_certificate=True)) == [{"hosts": [host]}]
    assert tls(p, _site_with(site, tls_secret=None, default_certificate=False)) is None


def test_jwt_without_tls_is_refused_by_the_renderer() -> None:
    """As unvalidated configuration: semantic.jwt_needs_tls tells the user (rule-jwt-ingress-without-tls)."""
    p, site = placement("nautilus", "cnn-classifier")
    bare = _site_with(site, tls_secret=None, default_certificate=False)
    with pytest.raises(Unvalidated, match=r"without TLS.*semantic\.jwt_needs_tls"):
        render_envoy(p, bare, None)


# --- site facts of the ingress controller (defect 13) -----------------------------------------------


def test_nautilus_ingress_speaks_haproxy_ingress() -> None:
    """haproxy-ingress reads <prefix>/<key> annotations, prefix haproxy-ingress.github.io; h2 to Envoy.

    jcmoraisjr/haproxy-ingress docs/content/en/docs/configuration/keys.md: backend-protocol
    [h1|h2|h1-ssl|h2-ssl] (Backend scope), proxy-body-size (Path), timeout-server /
    timeout-http-request / timeout-queue (Backend); timeout-client is Global scope, "ignored if
    declared elsewhere" than the controller's ConfigMap, so an annotation would be a no-op.
    """
    p, _ = placement("nautilus", "particlenet")
    annotations = find(rendered(p), "Ingress")["metadata"]["annotations"]
    assert annotations["haproxy-ingress.github.io/backend-protocol"] == "h2"
    assert annotations["haproxy-ingress.github.io/proxy-body-size"] == "512m"
    assert annotations["haproxy-ingress.github.io/timeout-server"] == "5m"
    assert not any(k.startswith("haproxy.org/") for k in annotations)  # the HAProxy Technologies controller's
    assert "haproxy-ingress.github.io/timeout-client" not in annotations
    # haproxy-ingress pkg/utils SizeSuffixToInt64: digits with an optional k/m/g suffix.
    assert re.fullmatch(r"[0-9]+[kKmMgG]?", annotations["haproxy-ingress.github.io/proxy-body-size"])


# --- Argo CD health (defect 7) ---------------------------------------------------------------------


def builtin_ingress_health(obj: dict[str, Any]) -> str:
    """gitops-engine pkg/health/health_ingress.go: Healthy iff status.loadBalancer.ingress is non-empty."""
    lb = (obj.get("status") or {}).get("loadBalancer") or {}
    return "Healthy" if lb.get("ingress") else "Progressing"


STATUSES: list[dict[str, Any] | None] = [
    None,
    {},
    {"loadBalancer": {}},
    {"loadBalancer": {"ingress": []}},
    {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}},
    {"loadBalancer": {"ingress": [{"hostname": "lb.example.org"}]}},
]


@pytest.fixture(scope="module")
def argocd_health() -> Any:
    """The override run as Argo CD runs it: Lua 5.1 (gopher-lua), the object as global ``obj``."""
    lua51 = pytest.importorskip("lupa.lua51", reason="lupa is not installed")
    script = ingress_health_lua()

    def health(obj: dict[str, Any]) -> dict[str, Any]:
        lua = lua51.LuaRuntime()
        lua.globals()["obj"] = lua.table_from(obj, recursive=True)
        return dict(lua.execute(script))

    return health


def _live(obj: dict[str, Any], status: dict[str, Any] | None) -> dict[str, Any]:
    live = copy.deepcopy(obj)
    if status is not None:
        live["status"] = status
    return live


def test_override_keeps_the_builtin_rule_for_other_ingresses(argocd_health: Any) -> None:
    foreign = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "x"}, "spec": {}}
    annotated = {**foreign, "metadata": {"name": "y", "annotations": {"a": "b"}}}
    for obj in (foreign, annotated):
        for status in STATUSES:
            live = _live(obj, status)
            assert argocd_health(live)["status"] == builtin_ingress_health(live), status


def test_rendered_ingresses_are_healthy_where_the_controller_never_publishes(argocd_health: Any) -> None:
    """publishesStatus: false -> Healthy without an address; true -> exactly Argo CD's built-in rule."""
    seen = set()
    for p, site, obj in _ingresses():
        assert site.ingress is not None
        annotated = obj["metadata"].get("annotations", {}).get(names.INGRESS_STATUS_ANNOTATION)
        assert (annotated == names.INGRESS_STATUS_UNPUBLISHED) is (not site.ingress.publishes_status), p.site
        for status in STATUSES:
            live = _live(obj, status)
            want = builtin_ingress_health(live) if site.ingress.publishes_status else "Healthy"
            assert argocd_health(live)["status"] == want, (p.site, status)
        seen.add(site.ingress.publishes_status)
    assert seen == {True, False}  # the examples cover both kinds of site


def test_without_the_override_an_unpublished_ingress_would_never_be_healthy() -> None:
    """Why the override exists: the built-in rule keeps a status-less Ingress Progressing forever."""
    p, _ = placement("nautilus", "particlenet")
    assert builtin_ingress_health(find(rendered(p), "Ingress")) == "Progressing"


def test_docs_show_the_tested_script() -> None:
    """docs/gitops.md's argocd-cm entry is this very script (indented under the YAML key)."""
    text = (ROOT / "docs" / "gitops.md").read_text()
    key = "  resource.customizations.health.networking.k8s.io_Ingress: |\n"
    assert key in text
    block = text.split(key, 1)[1].split("```", 1)[0]
    assert textwrap.dedent(block).strip() == ingress_health_lua().strip()


# --- a deployment's own annotations (issue 11, finding 2) -------------------------------------------


def test_deployment_annotations_are_added_and_never_replace_the_sites() -> None:
    p, site, _ = next(
        (p, s, o) for p, s, o in _ingresses() if s.ingress is not None and s.ingress.annotations
    )
    assert p.envoy.ingress is not None and site.ingress is not None
    (site_key, site_value), *_ = site.ingress.annotations.items()
    own = {"example.org/timeout": "600", site_key: "replaced"}
    ingress = p.envoy.ingress.model_copy(update={"annotations": own})
    mine = p.model_copy(update={"envoy": p.envoy.model_copy(update={"ingress": ingress})})
    obj = find(render_envoy(mine, site, None), "Ingress")
    assert obj["metadata"]["annotations"]["example.org/timeout"] == "600"
    assert obj["metadata"]["annotations"][site_key] == site_value  # validation refuses it; the renderer too
