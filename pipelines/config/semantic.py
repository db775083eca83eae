"""Rules that span files: what a single schema cannot know.

Each rule is a small generator over the typed tree yielding located errors; ``check`` runs
them all. A rule that needs a site or experiment that does not exist stays silent (the
"unknown site" rule already reported it), so one mistake yields one message.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal
from fnmatch import fnmatchcase
from pathlib import Path
from urllib.parse import urlsplit

from pipelines.config import layout, names
from pipelines.config.errors import ConfigError, JsonPath, display_path, format_path
from pipelines.config.footprint import Footprint, deployment_footprint
from pipelines.config.hostpaths import cvmfs_host_path_problem
from pipelines.config.images import allowed as image_allowed
from pipelines.config.images import pinned
from pipelines.config.images import repository as image_repository
from pipelines.config.model import (
    Affinity,
    Deployment,
    Model,
    NamespaceQuota,
    NodeSelectorTerm,
    Placement,
    PodAffinityTerm,
    Resources,
    application_name,
)
from pipelines.config.promql import promql_problems
from pipelines.config.quantity import memory_text, parse_quantity
from pipelines.config.reserved import RESERVED_EXPERIMENT_NAMES, reserved_reason
from pipelines.config.schedule import schedule_problem
from pipelines.config.secrets import find_inline_secrets
from pipelines.config.tree import Tree

Rule = Callable[[Tree], Iterator[ConfigError]]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


def check(tree: Tree) -> list[ConfigError]:
    return [err for r in RULES for err in r(tree)]


def _hint(word: str, known: list[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1)
    listed = ", ".join(sorted(known)) or "none"
    return (f"did you mean {close[0]!r}? " if close else "") + f"known: {listed}"


def _err(tree: Tree, source: Path, path: JsonPath, message: str, *, key: bool = False) -> ConfigError:
    return tree.documents[source].error(path, message, key=key)


def _where(tree: Tree, p: Placement, *path: str | int) -> JsonPath:
    """The path of a setting of ``p`` as written: the site override if there is one, else deployment-wide."""
    site_path: JsonPath = ("sites", p.site, *path)
    doc = tree.documents[p.source]
    return site_path if site_path in doc.values else tuple(path)


def _live(tree: Tree) -> Iterator[tuple[Deployment, Placement]]:
    for d in tree.deployments:
        for p in d.placements:
            yield d, p


@rule
def known_experiment(tree: Tree) -> Iterator[ConfigError]:
    for d in tree.deployments:
        if d.experiment not in tree.experiments and d.experiment not in tree.broken_experiments:
            yield _err(
                tree,
                d.source,
                ("experiment",),
                f"unknown experiment {d.experiment!r} (no {layout.experiment_file(d.experiment)}); "
                + _hint(d.experiment, list(tree.experiments)),
            )


@rule
def site_and_namespace_granted(tree: Tree) -> Iterator[ConfigError]:
    for _, p in _live(tree):
        site = tree.sites.get(p.site)
        where = ("sites", p.site)
        if site is None:
            if p.site in tree.broken_sites:
                continue
            yield _err(
                tree,
                p.source,
                where,
                f"unknown site {p.site!r} (no {_site_file(p.site)}); " + _hint(p.site, list(tree.sites)),
                key=True,
            )
            continue
        exp = tree.experiments.get(p.experiment)
        grant = site.experiments.get(p.experiment)
        if grant is None:
            yield _err(
                tree,
                p.source,
                where,
                f"experiment {p.experiment!r} is not admitted at site {p.site!r} "
                f"(the site admits: {', '.join(sorted(site.experiments)) or 'none'}); "
                + _site_admin_fix(site.source, f"experiments.{p.experiment}"),
                key=True,
            )
            continue
        if p.namespace not in grant.namespaces:
            yield _err(
                tree,
                p.source,
                (*where, "namespace"),
                f"namespace {p.namespace!r} is not granted to {p.experiment!r} "
                f"at site {p.site!r} (granted: {', '.join(grant.namespaces)}); use a granted namespace, or "
                + _site_admin_fix(site.source, f"experiments.{p.experiment}.namespaces"),
            )
            continue
        if exp is None:
            continue
        claim = exp.sites.get(p.site)
        if claim is None:
            yield _err(
                tree,
                p.source,
                where,
                f"experiment {p.experiment!r} does not list site {p.site!r} in "
                f"{layout.experiment_file(p.experiment)} (it lists: {', '.join(sorted(exp.sites))})",
                key=True,
            )
        elif p.namespace not in claim.namespaces:
            yield _err(
                tree,
                p.source,
                (*where, "namespace"),
                f"namespace {p.namespace!r} is not among the namespaces "
                f"experiment {p.experiment!r} uses at {p.site!r} ({', '.join(claim.namespaces)})",
            )


@rule
def experiment_sites_exist(tree: Tree) -> Iterator[ConfigError]:
    for exp in tree.experiments.values():
        for site_name, claim in exp.sites.items():
            site = tree.sites.get(site_name)
            if site is None:
                if site_name in tree.broken_sites:
                    continue
                yield _err(
                    tree,
                    exp.source,
                    ("sites", site_name),
                    f"unknown site {site_name!r}; " + _hint(site_name, list(tree.sites)),
                    key=True,
                )
                continue
            grant = site.experiments.get(exp.name)
            granted = set(grant.namespaces) if grant else set()
            for i, ns in enumerate(claim.namespaces):
                if ns not in granted:
                    yield _err(
                        tree,
                        exp.source,
                        ("sites", site_name, "namespaces", i),
                        f"namespace {ns!r} is not granted to {exp.name!r} by site {site_name!r} "
                        f"(granted: {', '.join(sorted(granted)) or 'none'})",
                    )


@rule
def site_sanity(tree: Tree) -> Iterator[ConfigError]:
    for site in tree.sites.values():
        lo, hi = (
            tuple(int(x) for x in v.split("."))
            for v in (site.kubernetes.min_version, site.kubernetes.max_version)
        )
        if lo > hi:
            yield _err(
                tree,
                site.source,
                ("kubernetes", "minVersion"),
                f"minVersion {site.kubernetes.min_version} is newer than maxVersion {site.kubernetes.max_version}",
            )
        owners: dict[str, str] = {}
        for exp_name, grant in sorted(site.experiments.items()):
            for i, ns in enumerate(grant.namespaces):
                if ns in owners:
                    yield _err(
                        tree,
                        site.source,
                        ("experiments", exp_name, "namespaces", i),
                        f"namespace {ns!r} is already granted to {owners[ns]!r}: experiments must not share namespaces",
                    )
                owners[ns] = exp_name
        # NetworkPolicies admit every pod of the Prometheus namespace to the metrics ports.
        prom = site.prometheus
        if prom is not None and prom.namespace in owners:
            yield _err(
                tree,
                site.source,
                ("prometheus", "namespace"),
                f"namespace {prom.namespace!r} is granted to experiment {owners[prom.namespace]!r}: every pod there "
                "could scrape Triton's and Envoy's metrics ports; give the namespace Prometheus itself runs in",
            )


@rule
def gpu_class_known(tree: Tree) -> Iterator[ConfigError]:
    for _, p in _live(tree):
        site = tree.sites.get(p.site)
        if site is None or p.triton.gpu is None:
            continue
        cls = p.triton.gpu.gpu_class
        if cls not in site.gpu_classes:
            yield _err(
                tree,
                p.source,
                (*_where(tree, p, "triton", "gpu"), "class"),
                f"{cls!r} is not a GPU class of site {p.site!r}; "
                + _hint(cls, list(site.gpu_classes))
                + "; a new class: "
                + _site_admin_fix(site.source, "gpuClasses"),
            )


@rule
def gpu_quota(tree: Tree) -> Iterator[ConfigError]:
    claims: dict[tuple[str, str], list[Placement]] = defaultdict(list)
    for _, p in _live(tree):
        if p.gpus_per_pod and p.site in tree.sites and p.experiment in tree.sites[p.site].experiments:
            claims[(p.site, p.experiment)].append(p)
    for (site_name, exp), placements in sorted(claims.items()):
        quota = tree.sites[site_name].experiments[exp].gpu_quota
        total = 0
        for p in sorted(placements, key=lambda x: (x.name, str(x.source))):
            total += p.gpus_per_pod * p.max_replicas
            if total > quota:
                parts = ", ".join(f"{x.name}: {x.gpus_per_pod}x{x.max_replicas}" for x in placements)
                # The most replicas is what counts: autoscaling.max, or the fixed replicas count.
                at = _where(tree, p, "autoscaling", "max") if p.autoscaling else _where(tree, p, "replicas")
                yield _err(
                    tree,
                    p.source,
                    at,
                    f"GPU quota of {exp!r} at {site_name!r} exceeded: {total} GPUs needed at most replicas "
                    f"({parts}), quota is {quota}; lower {format_path(at)} or triton.gpu.count, or "
                    + _site_admin_fix(tree.sites[site_name].source, f"experiments.{exp}.gpuQuota"),
                )
                break


@rule
def replicas_and_scaling(tree: Tree) -> Iterator[ConfigError]:
    for _, p in _live(tree):
        a = p.autoscaling
        if a is None:
            continue
        if a.min > a.max:
            yield _err(
                tree,
                p.source,
                _where(tree, p, "autoscaling", "min"),
                f"autoscaling min ({a.min}) is larger than max ({a.max}) at site {p.site!r}",
            )
        # metric, query, activationQuery and fallbackReplicas are deployment-wide only (the
        # override schema has no such fields), so they are reported where they must be written.
        if a.metric == "query" and not a.query:
            yield _err(tree, p.source, ("autoscaling", "query"), "metric 'query' needs a PromQL 'query'")
        if a.metric != "query" and a.query:
            yield _err(
                tree,
                p.source,
                ("autoscaling", "query"),
                f"'query' is only used with metric: query (metric is {a.metric!r})",
            )
        if a.min == 0:
            wake = a.activation_query if a.metric == "query" else "envoy"
            if wake is None or (wake != "envoy" and _triton_only(wake)):
                yield _err(
                    tree,
                    p.source,
                    _where(tree, p, "autoscaling", "min"),
                    "min 0 (scale to zero) cannot wake up: Triton's own metrics vanish with its last replica; "
                    "give an activationQuery on an Envoy metric (e.g. envoy_cluster_upstream_rq_total) or use a built-in metric",
                )
        if a.fallback_replicas is not None and a.fallback_replicas > a.max:
            yield _err(
                tree,
                p.source,
                ("autoscaling", "fallbackReplicas"),
                f"fallbackReplicas ({a.fallback_replicas}) is above max ({a.max})",
            )


def _triton_only(query: str) -> bool:
    metrics = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{|\[)", query))
    return not metrics or all(m.startswith("nv_") for m in metrics)


# A PromQL range such as [5m] or [1h30m], optionally a subquery's [5m:30s].
_RANGE = re.compile(r"\[\s*((?:[0-9]+(?:ms|s|m|h|d|w|y))+)\s*(?::[^\]]*)?\]")
_PROMQL_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
MIN_RANGE_SCRAPES = 4  # as pipelines.render.metrics.RATE_SCRAPES


def _promql_seconds(text: str) -> float:
    return sum(int(n) * _PROMQL_UNITS[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", text))


@rule
def query_ranges(tree: Tree) -> Iterator[ConfigError]:
    """Ranges in the deployment's own PromQL span at least four scrapes, like the rendered ones.

    rate() needs two samples inside its range: a range of two scrape intervals is empty as soon
    as one scrape is missed, and KEDA reads the empty answer as a failing trigger.
    """
    for d in tree.deployments:
        p = d.placements[0] if d.placements else None
        if p is None or p.autoscaling is None:
            continue
        scrape = p.monitoring.scrape_interval
        for field, query in (
            ("query", p.autoscaling.query),
            ("activationQuery", p.autoscaling.activation_query),
        ):
            for window in _RANGE.findall(query or ""):
                if _promql_seconds(window) < MIN_RANGE_SCRAPES * scrape:
                    yield _err(
                        tree,
                        p.source,
                        ("autoscaling", field),
                        f"the range [{window}] spans fewer than {MIN_RANGE_SCRAPES} scrape intervals "
                        f"(monitoring.scrapeInterval is {scrape:g}s): after one missed scrape it holds at most one "
                        f"sample, rate() answers nothing and KEDA reports the trigger as failing; use "
                        f"[{MIN_RANGE_SCRAPES * scrape:g}s] or longer",
                    )
                    break


@rule
def query_scope(tree: Tree) -> Iterator[ConfigError]:
    """A deployment's own PromQL reads only its own namespace, over a bounded window.

    The queries run with the site Prometheus' reach (KEDA's trigger, the admission gate): an
    unrestricted one could read other experiments' series or load Prometheus with days of data.
    """
    for _, p in _live(tree):
        if p.autoscaling is None:
            continue
        for field, query in (
            ("query", p.autoscaling.query),
            ("activationQuery", p.autoscaling.activation_query),
        ):
            if not query:
                continue
            for problem in promql_problems(query, p.namespace):
                yield _err(tree, p.source, ("autoscaling", field), f"at site {p.site!r}: {problem}")


@rule
def unique_names(tree: Tree) -> Iterator[ConfigError]:
    seen: dict[tuple[str, str], Path] = {}
    for d in tree.deployments:
        key = (d.experiment, d.name)
        if key in seen:
            yield _err(
                tree,
                d.source,
                ("name",),
                f"deployment name {d.name!r} is already used by {seen[key].name} "
                f"in experiment {d.experiment!r}",
            )
        else:
            seen[key] = d.source
        models: dict[str, int] = {}
        raw_models = tree.documents[d.source].data["models"]
        for i, m in enumerate(raw_models):
            if m["name"] in models:
                yield _err(
                    tree,
                    d.source,
                    ("models", i, "name"),
                    f"model {m['name']!r} is declared twice (also models[{models[m['name']]}])",
                )
            else:
                models[m["name"]] = i


def _site_hosts(tree: Tree) -> dict[str, str]:
    """Every host named by a URL in a site file (its API server, Prometheus, ...): host -> where."""
    hosts: dict[str, str] = {}

    def walk(value: object, path: str, site: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else str(k), site)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]", site)
        elif isinstance(value, str) and "://" in value:
            host = urlsplit(value).hostname
            if host:
                hosts.setdefault(host.lower(), f"{path} of site {site!r}")

    for site in tree.sites.values():
        walk(tree.documents[site.source].data, "", site.name)
    return hosts


def _ingress_claims(tree: Tree) -> Iterator[tuple[Placement, str, JsonPath, str]]:
    """Every ingress host a placement claims: (placement, host, where written, what for)."""
    for _, p in _live(tree):
        if p.envoy.ingress is not None:
            yield p, p.envoy.ingress.host, (*_where(tree, p, "envoy", "ingress"), "host"), "Envoy"
        if p.monitoring.grafana.host is not None:
            yield p, p.monitoring.grafana.host, _where(tree, p, "monitoring", "grafana", "host"), "Grafana"


@rule
def ingress_hosts(tree: Tree) -> Iterator[ConfigError]:
    """Ingress hosts (Envoy's and Grafana's): not a site's own, prefixed with the experiment, and
    each claimed once.

    A conflict is reported in every file that claims the host, so the victim is not the only
    one told (and the pull request that takes the host fails its own validation).
    """
    reserved = _site_hosts(tree)
    claims: dict[str, list[tuple[Placement, JsonPath, str]]] = defaultdict(list)
    for p, given, where, what in _ingress_claims(tree):
        host = given.lower()
        claims[host].append((p, where, what))
        if host in reserved:
            yield _err(tree, p.source, where, f"host {given!r} is reserved: it is the {reserved[host]}")
        if not host.split(".", 1)[0].startswith(f"{p.experiment}-"):
            yield _err(
                tree,
                p.source,
                where,
                f"host {given!r} must start with '{p.experiment}-' (the experiment's prefix, "
                f"e.g. '{p.experiment}-{p.name}.…'): hosts of one experiment cannot be taken by another",
            )
        site = tree.sites.get(p.site)
        if site is None:
            continue
        if site.ingress is None:
            yield _err(
                tree, p.source, where, f"site {p.site!r} offers no ingress (no 'ingress' in its site file)"
            )
        elif not host.endswith("." + site.ingress.domain.lower()):
            yield _err(
                tree,
                p.source,
                where,
                f"host {given!r} must be under the site's ingress domain {site.ingress.domain!r}",
            )
    for host, users in claims.items():
        owners = {(u.source, u.site, what) for u, _, what in users}
        if len(owners) < 2:
            continue
        for p, where, what in users:
            others = ", ".join(
                sorted(
                    f"{o.ref} at {o.site!r} ({display_path(o.source)})"
                    + ("" if o_what == "Envoy" else f" for {o_what}")
                    for o, _, o_what in users
                    if (o.source, o.site, o_what) != (p.source, p.site, what)
                )
            )
            yield _err(
                tree,
                p.source,
                where,
                f"ingress host {host!r} is also claimed by {others}: each host belongs to one deployment",
            )


JWT_WITHOUT_TLS = (
    "the deployment uses JWT auth (envoy.auth.jwt) but this Ingress has no TLS, so bearer tokens would "
    "cross the network in clear text; give envoy.ingress.tlsSecret, or have the admins of site "
    "'{site}' set ingress.tlsSecret or ingress.defaultCertificate: true in "
    + layout.site_file("{site}")
    + " (or set envoy.ingress.tls: default if the controller's default certificate covers the host)"
)


@rule
def jwt_needs_tls(tree: Tree) -> Iterator[ConfigError]:
    for _, p in _live(tree):
        site = tree.sites.get(p.site)
        ing = p.envoy.ingress
        if site is None or site.ingress is None or ing is None:
            continue  # no ingress at all: the ingress_hosts rule speaks
        if p.envoy.auth is None or p.envoy.auth.jwt is None:
            continue
        if (
            ing.tls_secret
            or ing.tls == "default"
            or site.ingress.tls_secret
            or site.ingress.default_certificate
        ):
            continue
        yield _err(tree, p.source, _where(tree, p, "envoy", "ingress"), JWT_WITHOUT_TLS.format(site=p.site))


@rule
def rollout_reaches_deployments(tree: Tree) -> Iterator[ConfigError]:
    """A site whose rollouts verify through the ingress needs an ingress on every deployment there."""
    for _, p in _live(tree):
        site = tree.sites.get(p.site)
        if site is None or site.rollout.verify_through != "ingress" or p.envoy.ingress is not None:
            continue
        yield _err(
            tree,
            p.source,
            _where(tree, p, "envoy"),
            f"no envoy.ingress, but site {p.site!r} verifies rollouts through the ingress "
            f"({display_path(site.source)}: rollout.verifyThrough: ingress): declare envoy.ingress.host "
            "or have the site verify through its Service",
        )


OWN_PROMETHEUS = (
    "run one in the namespace with monitoring.prometheus.enabled: true (deployment-wide or under "
    "sites.<site>.monitoring), or have the site's administrators declare theirs (prometheus in its site file)"
)


@rule
def prometheus_consistency(tree: Tree) -> Iterator[ConfigError]:
    for site in tree.sites.values():
        prom = site.prometheus
        if prom and prom.auth and prom.url.startswith("http://"):
            yield _err(
                tree,
                site.source,
                ("prometheus", "auth"),
                "a bearer token would be sent over plain http: use an https:// Prometheus URL or drop auth",
            )
    for _, p in _live(tree):
        where = tree.sites.get(p.site)
        if where is None or where.prometheus is not None or p.monitoring.prometheus.enabled:
            continue
        if p.autoscaling is not None:
            yield _err(
                tree,
                p.source,
                _where(tree, p, "autoscaling"),
                f"autoscaling needs Prometheus, but site {p.site!r} declares none; {OWN_PROMETHEUS}",
            )
        if p.envoy.admission_gate is not None and p.envoy.admission_gate.enabled:
            yield _err(
                tree,
                p.source,
                ("envoy", "admissionGate"),
                f"the admission gate queries Prometheus, but site {p.site!r} declares none (set enabled: false); "
                + OWN_PROMETHEUS,
            )


@rule
def auth_consistency(tree: Tree) -> Iterator[ConfigError]:
    for d in tree.deployments:
        for p in d.placements[:1]:  # auth is deployment-wide: report once
            jwt = p.envoy.auth.jwt if p.envoy.auth else None
            if jwt is None:
                continue
            if jwt.jwks_uri.rstrip("/") == jwt.issuer.rstrip("/"):
                yield _err(
                    tree,
                    p.source,
                    ("envoy", "auth", "jwt", "jwksUri"),
                    "jwksUri equals the issuer: give the key set URL (for Keycloak "
                    "<issuer>/protocol/openid-connect/certs)",
                )


def _declared_models(tree: Tree) -> Iterator[tuple[Placement, int, Model]]:
    """Each model as declared (the first placement: models are deployment-wide), with its index."""
    for d in tree.deployments:
        if d.placements:
            p = d.placements[0]
            for i, m in enumerate(p.models):
                yield p, i, m


@rule
def dynamic_batching_needs_batches(tree: Tree) -> Iterator[ConfigError]:
    """Dynamic batching forms batches: a model without a batch dimension cannot have it."""
    for p, i, m in _declared_models(tree):
        if m.dynamic_batching is not None and m.max_batch_size == 0:
            yield _err(
                tree, p.source, ("models", i, "dynamicBatching"), "dynamic batching needs maxBatchSize > 0"
            )


@rule
def preferred_batch_sizes(tree: Tree) -> Iterator[ConfigError]:
    """A preferred batch size above maxBatchSize is never formed."""
    for p, i, m in _declared_models(tree):
        if m.dynamic_batching is None:
            continue
        for j, size in enumerate(m.dynamic_batching.preferred_batch_size):
            if size > m.max_batch_size:
                yield _err(
                    tree,
                    p.source,
                    ("models", i, "dynamicBatching", "preferredBatchSize", j),
                    f"preferred batch size {size} is above maxBatchSize {m.max_batch_size}",
                )


@rule
def model_has_source(tree: Tree) -> Iterator[ConfigError]:
    """A model without an artifact must be found in an in-place repository of the deployment."""
    for p, i, m in _declared_models(tree):
        if m.artifact is None and not _has_in_place(p):
            yield _err(
                tree,
                p.source,
                ("models", i, "name"),
                f"model {m.name!r} has no artifact and the deployment has no "
                "in-place repository (modelRepository.cvmfs/pvc/nfs/baked) to find it in",
            )


@rule
def strict_config_has_inputs(tree: Tree) -> Iterator[ConfigError]:
    """With strictModelConfig Triton loads only fully declared models; no generated config without inputs."""
    for p, i, m in _declared_models(tree):
        if (
            m.artifact is None
            and m.config_file is None
            and not m.inputs
            and p.triton.server.strict_model_config
        ):
            yield _err(
                tree,
                p.source,
                ("models", i),
                f"model {m.name!r} declares no inputs while strictModelConfig is on",
            )


@rule
def artifact_sources(tree: Tree) -> Iterator[ConfigError]:
    """An artifact is a file inside the experiment's folder, or an https:// URL with its size."""
    for p, i, m in _declared_models(tree):
        if m.artifact is None:
            continue
        at: JsonPath = ("models", i, "artifact")
        if "://" not in m.artifact.source:
            yield from _local_file(tree, p, (*at, "source"), m.artifact.source)
        else:
            yield from _remote_artifact(tree, p, at, m.artifact.source, m.artifact.size)


@rule
def config_files_exist(tree: Tree) -> Iterator[ConfigError]:
    """A supplied config.pbtxt is a file inside the experiment's folder."""
    for p, i, m in _declared_models(tree):
        if m.config_file is not None:
            yield from _local_file(tree, p, ("models", i, "configFile"), m.config_file)


@rule
def gpu_instances_need_gpu(tree: Tree) -> Iterator[ConfigError]:
    """GPU model instances need a GPU in the pod, at every site (gpu may be set per site)."""
    for d in tree.deployments:
        for p in d.placements:
            for i, m in enumerate(p.models):
                if m.instances.kind == "GPU" and p.gpus_per_pod == 0:
                    yield _err(
                        tree,
                        p.source,
                        ("models", i, "instances", "kind"),
                        f"GPU instances need a GPU: set triton.gpu with a count of at least 1 "
                        f"(missing at site {p.site!r})",
                    )
                    break


def _local_file(tree: Tree, p: Placement, path: JsonPath, rel: str) -> Iterator[ConfigError]:
    """A file named relative to the deployment must exist inside the experiment's folder.

    The build workflow reads these files from a checkout of a pull request: an absolute path
    or ``..`` could make it read (and hash, and publish) any file on the build machine.
    """
    folder = p.source.parent.resolve()
    target = (folder / rel).resolve()
    if Path(rel).is_absolute() or not target.is_relative_to(folder):
        yield _err(
            tree,
            p.source,
            path,
            f"{rel!r} points outside {layout.experiment_dir(folder.name)}/: "
            "give a path relative to the deployment file, inside the experiment's folder",
        )
    elif not target.is_file():
        yield _err(tree, p.source, path, f"file {rel!r} not found next to the deployment")


def _remote_artifact(
    tree: Tree, p: Placement, at: JsonPath, source: str, size: int | None
) -> Iterator[ConfigError]:
    """A URL artifact is https, and says how big it is (the build stops reading there).

    ``file://`` would let a pull request make the build read any file of the build machine, and
    a download without a declared size could fill the snapshots volume.
    """
    if not source.startswith("https://"):
        yield _err(
            tree,
            p.source,
            (*at, "source"),
            f"{source.split('://', 1)[0]}:// sources are not allowed: give an https:// URL or a path "
            "relative to the deployment file, inside the experiment's folder",
        )
    elif size is None:
        yield _err(
            tree,
            p.source,
            at,
            "an https:// artifact needs its size in bytes (artifact.size): the download stops there",
        )


def _has_in_place(p: Placement) -> bool:
    r = p.model_repository
    return bool(r.cvmfs or r.pvc or r.nfs or r.baked)


@rule
def storage_available(tree: Tree) -> Iterator[ConfigError]:
    for _, p in _live(tree):
        site = tree.sites.get(p.site)
        if site is None:
            continue
        repo = p.model_repository
        if repo.cvmfs and site.storage.cvmfs is None:
            yield _err(
                tree,
                p.source,
                ("modelRepository", "cvmfs"),
                f"site {p.site!r} offers no CVMFS (storage.cvmfs)",
            )
        if repo.nfs and site.storage.nfs is None:
            yield _err(
                tree, p.source, ("modelRepository", "nfs"), f"site {p.site!r} offers no NFS (storage.nfs)"
            )
        if any(m.artifact for m in p.models) and site.storage.snapshots is None and site.storage.s3 is None:
            first = next(i for i, m in enumerate(p.models) if m.artifact)
            yield _err(
                tree,
                p.source,
                ("models", first, "artifact"),
                f"models built from artifacts are published as snapshots, but site {p.site!r} offers no "
                "snapshot storage (storage.snapshots or storage.s3)",
            )
        cap = site.storage.max_artifact_size
        for i, m in enumerate(p.models):
            if m.artifact is not None and m.artifact.size is not None and m.artifact.size > cap:
                yield _err(
                    tree,
                    p.source,
                    ("models", i, "artifact", "size"),
                    f"{m.artifact.size} bytes is above the limit for one artifact at site {p.site!r} "
                    f"({cap} bytes, storage.maxArtifactSize)",
                )
        for i, pvc in enumerate(repo.pvc):
            if pvc.claim not in site.storage.pvcs:
                yield _err(
                    tree,
                    p.source,
                    ("modelRepository", "pvc", i, "claim"),
                    f"claim {pvc.claim!r} is not offered by site {p.site!r} (storage.pvcs: {', '.join(site.storage.pvcs) or 'none'})",
                )


@rule
def checks_refer_to_models(tree: Tree) -> Iterator[ConfigError]:
    for d in tree.deployments:
        if not d.placements:
            continue
        p = d.placements[0]
        names = [m.name for m in p.models]
        rm = p.triton.probes.readiness_model
        if rm is not None and rm.name not in names:
            yield _err(
                tree,
                p.source,
                ("triton", "probes", "readinessModel", "name"),
                f"{rm.name!r} is not a model of this deployment; " + _hint(rm.name, names),
            )
        for i, c in enumerate(p.checks.models):
            at: JsonPath = ("checks", "models", i)
            model = p.model(c.name)
            if model is None:
                yield _err(
                    tree,
                    p.source,
                    (*at, "name"),
                    f"{c.name!r} is not a model of this deployment; " + _hint(c.name, names),
                )
                continue
            if model.max_batch_size and c.batch_size > model.max_batch_size:
                yield _err(
                    tree,
                    p.source,
                    (*at, "batchSize"),
                    f"batch size {c.batch_size} is above maxBatchSize {model.max_batch_size}",
                )
            inputs = {t.name: t for t in model.inputs}
            for name, dims in (c.shapes or {}).items():
                t = inputs.get(name)
                if t is None:
                    yield _err(
                        tree,
                        p.source,
                        (*at, "shapes", name),
                        f"{name!r} is not an input of {c.name!r}; " + _hint(name, list(inputs)),
                        key=True,
                    )
                elif len(dims) != len(t.dims) or any(
                    want not in (-1, got) for want, got in zip(t.dims, dims, strict=False)
                ):
                    yield _err(
                        tree,
                        p.source,
                        (*at, "shapes", name),
                        f"shape {list(dims)} does not fit the declared dims {list(t.dims)}",
                    )
            if c.reference is not None:
                for part in ("inputs", "outputs"):
                    yield from _local_file(tree, p, (*at, "reference", part), getattr(c.reference, part))


@rule
def schedule_is_sane(tree: Tree) -> Iterator[ConfigError]:
    """A schedule Argo cannot parse, or one too frequent, would break every check of the site."""
    seen: set[tuple[Path, JsonPath]] = set()
    for _, p in _live(tree):
        where = _where(tree, p, "checks", "schedule")
        if (p.source, where) in seen:
            continue
        seen.add((p.source, where))
        problem = schedule_problem(p.checks.schedule)
        if problem:
            yield _err(tree, p.source, where, problem + " (the deployment's authors can change it here)")


def _owners(source: Path) -> str:
    """Who edits ``source``, by where it lives (sites' files, experiments' files, deployments)."""
    if source.parent.parts[-2:] == tuple(layout.SITES_DIR.split("/")):
        return "the site's administrators"
    if source.name == layout.EXPERIMENT_FILE:
        return "the experiment's coordinators"
    return "the deployment's authors"


@rule
def no_inline_secrets(tree: Tree) -> Iterator[ConfigError]:
    for source, doc in tree.documents.items():
        for path, what in find_inline_secrets(doc.data):
            yield _err(
                tree,
                source,
                path,
                f"this looks like {what}: never commit credentials; put them in a "
                f"Kubernetes Secret and reference it (secretRef); {_owners(source)} must remove it "
                "and revoke it, since the pull request already published it",
            )


# --- the in-namespace monitoring stack (render/monitoring_stack.py) ---------------------------------


@rule
def monitoring_stack(tree: Tree) -> Iterator[ConfigError]:
    """What the in-namespace stack needs, and settings it replaces.

    Reported once per place written: a deployment-wide setting is the same at every site.
    """
    seen: set[tuple[Path, JsonPath, str]] = set()

    def once(p: Placement, where: JsonPath, message: str) -> Iterator[ConfigError]:
        if (p.source, where, message) not in seen:
            seen.add((p.source, where, message))
            yield _err(tree, p.source, where, message)

    for _, p in _live(tree):
        m = p.monitoring
        if m.grafana.enabled and not m.prometheus.enabled:
            yield from once(
                p,
                _where(tree, p, "monitoring", "grafana", "enabled"),
                f"Grafana in the namespace reads the Prometheus in the namespace (at site {p.site!r}): "
                "set monitoring.prometheus.enabled: true too, or leave Grafana off",
            )
        if m.grafana.host is not None and not m.grafana.enabled:
            yield from once(
                p,
                _where(tree, p, "monitoring", "grafana", "host"),
                f"a Grafana host without Grafana (at site {p.site!r}): set monitoring.grafana.enabled: true or drop host",
            )
        tr = p.envoy.tracing
        if m.tracing.enabled and tr is not None and tr.collector is not None:
            yield from once(
                p,
                ("envoy", "tracing", "collector"),
                f"monitoring.tracing.enabled sends Envoy's traces to the collector in the namespace (at site "
                f"{p.site!r}): drop envoy.tracing.collector, or turn the in-namespace tracing off",
            )
        if not m.tracing.enabled and tr is not None and tr.collector is None:
            yield from once(
                p,
                ("envoy", "tracing"),
                f"envoy.tracing needs a collector (host:port) at site {p.site!r}, or "
                "monitoring.tracing.enabled: true to run one in the namespace",
            )
        tt = p.triton.server.tracing
        if m.tracing.enabled and tt is not None and tt.mode == "opentelemetry" and tt.endpoint:
            yield from once(
                p,
                _where(tree, p, "triton", "server", "tracing", "endpoint"),
                f"monitoring.tracing.enabled sends Triton's traces to the collector in the namespace (at site "
                f"{p.site!r}): drop triton.server.tracing.endpoint, or turn the in-namespace tracing off",
            )


GRAFANA_WITHOUT_TLS = (
    "Grafana's login would cross the Ingress in clear text: site {site!r} has no TLS for its ingress "
    "hosts; its administrators can set ingress.tlsSecret or ingress.defaultCertificate: true in "
    + layout.site_file("{site}")
    + ", or drop monitoring.grafana.host (port-forward instead)"
)


@rule
def grafana_host_tls(tree: Tree) -> Iterator[ConfigError]:
    for _, p in _live(tree):
        site = tree.sites.get(p.site)
        g = p.monitoring.grafana
        if site is None or site.ingress is None or g.host is None or not g.enabled:
            continue  # no ingress at all: the ingress_hosts rule speaks
        if site.ingress.tls_secret or site.ingress.default_certificate:
            continue
        yield _err(
            tree,
            p.source,
            _where(tree, p, "monitoring", "grafana", "host"),
            GRAFANA_WITHOUT_TLS.format(site=p.site),
        )


@rule
def keda_namespace_not_granted(tree: Tree) -> Iterator[ConfigError]:
    """An in-namespace Prometheus admits KEDA's namespace: no experiment may deploy there."""
    for site in tree.sites.values():
        for exp_name, grant in sorted(site.experiments.items()):
            if site.keda.namespace in grant.namespaces:
                yield _err(
                    tree,
                    site.source,
                    ("keda", "namespace")
                    if ("keda", "namespace") in tree.documents[site.source].values
                    else ("experiments", exp_name),
                    f"namespace {site.keda.namespace!r} (where KEDA runs, keda.namespace) is granted to experiment "
                    f"{exp_name!r}: its pods could query every in-namespace Prometheus; give KEDA's own namespace",
                )


# --- quotas (issue 11, finding 8) ------------------------------------------------------------------
# Hard caps: no node offers more to one container, so larger values are mistakes or attacks
# (cpu: 999999, memory: 999Ei), refused before any quota is counted. A site's namespace quota
# has caps of its own (site.schema.json experiments.<name>.quota descriptions).
MAX_CONTAINER_CPU = Decimal(512)  # cores
MAX_CONTAINER_MEMORY = Decimal(8 * 1024**4)  # 8Ti
MAX_NAMESPACE_CPU = Decimal(100000)
MAX_NAMESPACE_MEMORY = Decimal(1024**5)  # 1Pi


_RESOURCE_FIELDS = (
    ("cpu", "cpu"),
    ("cpuLimit", "cpu_limit"),
    ("memory", "memory"),
    ("memoryLimit", "memory_limit"),
)


def _resource_problems(r: Resources) -> Iterator[tuple[str, str]]:
    """(field, problem) for one container's resources: above a hard cap, or a limit below its request."""
    values = {field: getattr(r, attr) for field, attr in _RESOURCE_FIELDS}
    for field, text in values.items():
        cap, show = (
            (MAX_CONTAINER_CPU, "512 cores") if field.startswith("cpu") else (MAX_CONTAINER_MEMORY, "8Ti")
        )
        if text is not None and parse_quantity(text) > cap:
            yield field, f"{text!r} is more than one container may have (at most {show})"
    for request, limit in (("cpu", "cpuLimit"), ("memory", "memoryLimit")):
        req, lim = values[request], values[limit]
        if req is not None and lim is not None and parse_quantity(lim) < parse_quantity(req):
            yield limit, f"{lim!r} is below the request {request}: {req!r} (Kubernetes refuses such a pod)"


@rule
def resources_sane(tree: Tree) -> Iterator[ConfigError]:
    """Container resources within hard caps, limits not below requests; site quotas within theirs."""
    seen: set[tuple[Path, JsonPath]] = set()
    for _, p in _live(tree):
        for component, r in (("triton", p.triton.resources), ("envoy", p.envoy.resources)):
            for field, problem in _resource_problems(r):
                where = _where(tree, p, component, "resources", field)
                if (p.source, where) in seen:
                    continue
                seen.add((p.source, where))
                yield _err(
                    tree,
                    p.source,
                    where,
                    f"{problem}; the deployment's authors can change it here",
                )
    for site in tree.sites.values():
        for exp_name, grant in sorted(site.experiments.items()):
            for field, cap, show in (
                ("cpu", MAX_NAMESPACE_CPU, "100000 cores"),
                ("memory", MAX_NAMESPACE_MEMORY, "1Pi"),
            ):
                text = getattr(grant.quota, field)
                if parse_quantity(text) > cap:
                    yield _err(
                        tree,
                        site.source,
                        ("experiments", exp_name, "quota", field),
                        f"{text!r} is more than any namespace can use (at most {show}); "
                        "the site's administrators can change it here",
                    )


@rule
def resources_complete(tree: Tree) -> Iterator[ConfigError]:
    """Every container gets both a CPU and a memory request (and so limits): a site override or a
    partial resources block must not drop one (quotas and the LimitRange count both)."""
    seen: set[tuple[Path, JsonPath]] = set()
    for _, p in _live(tree):
        for component, r in (("triton", p.triton.resources), ("envoy", p.envoy.resources)):
            missing = [field for field in ("cpu", "memory") if getattr(r, field) is None]
            where = _where(tree, p, component, "resources")
            if not missing or (p.source, where) in seen:
                continue
            seen.add((p.source, where))
            yield _err(
                tree,
                p.source,
                where,
                f"{' and '.join(missing)} missing at site {p.site!r}: every container needs both cpu and memory "
                f'requests (e.g. cpu: "2", memory: 4Gi); the deployment\'s authors can add '
                f"{' and '.join(missing)} here",
            )


_QUOTA_KINDS: tuple[
    tuple[str, str, Callable[[Footprint], Decimal], Callable[[NamespaceQuota], Decimal]], ...
] = (
    ("cpu", "CPU", lambda f: max(f.requests_cpu, f.limits_cpu), lambda q: parse_quantity(q.cpu)),
    (
        "memory",
        "memory",
        lambda f: max(f.requests_memory, f.limits_memory),
        lambda q: parse_quantity(q.memory),
    ),
    ("pods", "pods", lambda f: Decimal(f.pods), lambda q: Decimal(q.pods)),
)


def _shown_amount(key: str, value: Decimal) -> str:
    if key == "cpu":
        return f"{value.normalize():f} cores"
    return memory_text(value) if key == "memory" else str(int(value))


@rule
def namespace_quota(tree: Tree) -> Iterator[ConfigError]:
    """Every deployment of a namespace, at its most, fits the namespace's quota from the site file.

    Counted as :mod:`pipelines.config.footprint` says (the rendered ResourceQuota is the same
    quota). Reported on every deployment of the namespace, each at its own replica limit, so the
    pull request that adds the last straw fails as well as the files already there.
    """
    groups: dict[tuple[str, str], list[Placement]] = defaultdict(list)
    for _, p in _live(tree):
        site = tree.sites.get(p.site)
        grant = site.experiments.get(p.experiment) if site else None
        if grant is not None and p.namespace in grant.namespaces:
            groups[(p.site, p.namespace)].append(p)
    for (site_name, ns), placements in sorted(groups.items()):
        site = tree.sites[site_name]
        placements.sort(key=lambda x: (x.name, str(x.source)))
        grant = site.experiments[placements[0].experiment]
        if any(
            any(True for _ in _resource_problems(r))
            for p in placements
            for r in (p.triton.resources, p.envoy.resources)
        ):
            continue  # resources_sane reports the cause; a sum of absurd values says nothing more
        needs = {p.name: deployment_footprint(p, site) for p in placements}
        total = Footprint()
        for f in needs.values():
            total = total + f
        for key, what, need_of, quota_of in _QUOTA_KINDS:
            need, quota = need_of(total), quota_of(grant.quota)
            if need <= quota:
                continue
            parts = ", ".join(f"{name}: {_shown_amount(key, need_of(f))}" for name, f in needs.items())
            for p in placements:
                field = ("autoscaling", "max") if p.autoscaling else ("replicas",)
                yield _err(
                    tree,
                    p.source,
                    _where(tree, p, *field),
                    f"{what} quota of namespace {ns!r} at site {site_name!r} exceeded: its deployments need "
                    f"{_shown_amount(key, need)} at their most ({parts}), the quota is "
                    f"{_shown_amount(key, quota)}. Each deployment counts its Triton pods at maximum replicas "
                    "plus a rolling-update pod, its Envoy pods plus one, its check Job and its model build "
                    "(docs/security.md, 'Quotas'). Lower the replicas or resources, or ask the site's "
                    f"administrators to raise experiments.{p.experiment}.quota.{key} in {_site_file(site_name)}",
                )


@rule
def jwt_audience_per_deployment(tree: Tree) -> Iterator[ConfigError]:
    """No two deployments accept the same audience of the same issuer (issue 11, finding 14).

    Envoy accepts any token of the issuer that names one of the deployment's audiences, so a
    shared audience makes a token for one deployment good at the other. Reported in every file
    involved, each naming the others.
    """
    claims: dict[tuple[str, str], list[tuple[Deployment, int]]] = defaultdict(list)
    for d in tree.deployments:
        p = d.placements[0] if d.placements else None  # auth is deployment-wide
        jwt = p.envoy.auth.jwt if p is not None and p.envoy.auth else None
        if jwt is None:
            continue
        for i, audience in enumerate(jwt.audiences):
            claims[(jwt.issuer.rstrip("/"), audience)].append((d, i))
    for (issuer, audience), users in sorted(claims.items()):
        if len(users) < 2:
            continue
        for d, i in users:
            others = ", ".join(sorted(f"{o.ref} ({display_path(o.source)})" for o, _ in users if o is not d))
            yield _err(
                tree,
                d.source,
                ("envoy", "auth", "jwt", "audiences", i),
                f"audience {audience!r} of issuer {issuer!r} is also accepted by {others}: a token for one "
                "deployment would be good at the other; give each deployment its own audience (and its "
                "check client, Secret <deployment>-check-client, a client of the identity provider "
                "that may ask for this audience only)",
            )


# --- placement, Services, ingress, Triton flags and mounts (issue 12 item 2) -------------------------

# Keys the renderer owns on labels and annotations (names.labels, ROLE_LABEL, the checksum and
# ingress-status annotations, Argo CD's sync waves): a deployment's own keys there could re-route
# a selector (the ServiceMonitor selects the stats Service by sonic.fastml.org/role), hide a
# renderer's value or change how Argo CD syncs the object.
RESERVED_KEY_PREFIXES = ("sonic.fastml.org/", "app.kubernetes.io/", "argocd.argoproj.io/")
# Taints that keep workloads off the control plane (the current key, and the one before 1.24).
CONTROL_PLANE_TAINTS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
# Pod annotations that would loosen the container sandbox (legacy AppArmor / seccomp forms).
SANDBOX_ANNOTATIONS = (
    "container.apparmor.security.beta.kubernetes.io/",
    "seccomp.security.alpha.kubernetes.io/",
)
# Where an extra mount may not go: the renderer's own mounts and the image's and system's directories.
TRITON_RESERVED_DIRS = (
    "/tmp",
    "/dev",
    "/proc",
    "/sys",
    "/models",
    "/cvmfs",
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/var/run",
    "/run",
    "/opt/tritonserver",
)
# What triton.server.tracing renders as --trace-config; flags may not set these again.
TRACING_SETTINGS = ("mode", "level", "rate", "opentelemetry,url", "triton,file")


def _once(errors: Iterator[ConfigError]) -> Iterator[ConfigError]:
    """Each error once: rules over placements meet deployment-wide settings once per site."""
    seen: set[ConfigError] = set()
    for err in errors:
        if err not in seen:
            seen.add(err)
            yield err


def _site_file(site: str) -> str:
    return layout.site_file(site)


def _placement_settings(tree: Tree, p: Placement) -> Iterator[ConfigError]:
    for component, tolerations in (("triton", p.triton.tolerations), ("envoy", p.envoy.tolerations)):
        for i, t in enumerate(tolerations):
            if t.key in CONTROL_PLANE_TAINTS:
                yield _err(
                    tree,
                    p.source,
                    (*_where(tree, p, component, "tolerations"), i, "key"),
                    f"a toleration of {t.key} would let the pods onto the cluster's control-plane nodes: "
                    "which nodes run workloads is the site admins' decision, not a deployment's; "
                    "remove it (pools for inference are offered by the site as GPU classes)",
                )
    keyed: list[tuple[tuple[str, ...], dict[str, str]]] = [
        (("envoy", "service", "labels"), p.envoy.service.labels),
        (("envoy", "service", "annotations"), p.envoy.service.annotations),
        (("envoy", "podAnnotations"), p.envoy.pod_annotations),
        (("triton", "podAnnotations"), p.triton.pod_annotations),
    ]
    if p.envoy.ingress is not None:
        keyed.append((("envoy", "ingress", "annotations"), p.envoy.ingress.annotations))
    for path, mapping in keyed:
        for key in mapping:
            if key.startswith(RESERVED_KEY_PREFIXES):
                yield _err(
                    tree,
                    p.source,
                    (*_where(tree, p, *path), key),
                    f"keys under {', '.join(RESERVED_KEY_PREFIXES)} are set by the renderer "
                    "(selectors, checksums and sync waves rely on them): choose another key",
                    key=True,
                )
            elif path[-1] == "podAnnotations" and key.startswith(SANDBOX_ANNOTATIONS):
                yield _err(
                    tree,
                    p.source,
                    (*_where(tree, p, *path), key),
                    "the pods' security profile is the renderer's (RuntimeDefault seccomp, restricted Pod "
                    "Security): this annotation would change it; remove it",
                    key=True,
                )
    for component, affinity in (("triton", p.triton.affinity), ("envoy", p.envoy.affinity)):
        if affinity is not None:
            for rel, problem in _affinity_problems(affinity):
                yield _err(tree, p.source, (*_where(tree, p, component, "affinity"), *rel), problem)


def _requirement_problem(operator: str, values: tuple[str, ...]) -> str | None:
    if operator in ("In", "NotIn") and not values:
        return f"operator {operator} needs at least one value"
    if operator in ("Exists", "DoesNotExist") and values:
        return f"operator {operator} takes no values (remove values)"
    if operator in ("Gt", "Lt") and (len(values) != 1 or not values[0].lstrip("-").isdigit()):
        return f"operator {operator} takes exactly one integer value"
    return None


def _affinity_problems(a: Affinity) -> Iterator[tuple[JsonPath, str]]:
    """(path inside the affinity, problem) for requirements Kubernetes would refuse."""
    node = a.node_affinity
    terms: list[tuple[JsonPath, NodeSelectorTerm]] = []
    if node is not None:
        req = node.required_during_scheduling_ignored_during_execution
        if req is not None:
            terms += [
                (
                    (
                        "nodeAffinity",
                        "requiredDuringSchedulingIgnoredDuringExecution",
                        "nodeSelectorTerms",
                        i,
                    ),
                    t,
                )
                for i, t in enumerate(req.node_selector_terms)
            ]
        terms += [
            (
                ("nodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution", i, "preference"),
                w.preference,
            )
            for i, w in enumerate(node.preferred_during_scheduling_ignored_during_execution)
        ]
    for at, term in terms:
        for field, reqs in (("matchExpressions", term.match_expressions), ("matchFields", term.match_fields)):
            for j, r in enumerate(reqs):
                problem = _requirement_problem(r.operator, r.values)
                if problem:
                    yield (*at, field, j, "operator"), problem
    for kind, pod in (("podAffinity", a.pod_affinity), ("podAntiAffinity", a.pod_anti_affinity)):
        if pod is None:
            continue
        pod_terms: list[tuple[JsonPath, PodAffinityTerm]] = [
            ((kind, "requiredDuringSchedulingIgnoredDuringExecution", i), t)
            for i, t in enumerate(pod.required_during_scheduling_ignored_during_execution)
        ]
        pod_terms += [
            (
                (kind, "preferredDuringSchedulingIgnoredDuringExecution", i, "podAffinityTerm"),
                w.pod_affinity_term,
            )
            for i, w in enumerate(pod.preferred_during_scheduling_ignored_during_execution)
        ]
        for at, t in pod_terms:
            for sel_name, sel in (
                ("labelSelector", t.label_selector),
                ("namespaceSelector", t.namespace_selector),
            ):
                for j, lr in enumerate(sel.match_expressions if sel else ()):
                    problem = _requirement_problem(lr.operator, lr.values)
                    if problem:
                        yield (*at, sel_name, "matchExpressions", j, "operator"), problem


@rule
def placement_settings(tree: Tree) -> Iterator[ConfigError]:
    """Tolerations, affinity, labels and annotations a deployment adds to its pods and Services."""
    yield from _once(err for _, p in _live(tree) for err in _placement_settings(tree, p))


def _service_names(p: Placement) -> dict[str, str]:
    """Every Service ``p`` renders in its namespace: name -> what it is."""
    return {
        names.triton_name(p): f"the Triton Service of {names.deployment_ref(p)}",
        names.envoy_name(p): f"the Envoy Service of {names.deployment_ref(p)}",
        names.envoy_stats_name(p): f"the Envoy stats Service of {names.deployment_ref(p)}",
    }


@rule
def envoy_service_settings(tree: Tree) -> Iterator[ConfigError]:
    """The client Service: no plain-text exposure of bearer tokens, and an alias no other Service has."""
    taken: dict[tuple[str, str], dict[str, tuple[Placement, str]]] = defaultdict(dict)
    placements = sorted((p for _, p in _live(tree)), key=lambda x: (x.site, x.experiment, x.name))
    for p in placements:  # the renderer's names first: an alias never takes one of them
        for svc, what in _service_names(p).items():
            taken[(p.site, p.namespace)].setdefault(svc, (p, what))
    for p in placements:
        if p.envoy.service.alias:
            what = f"the alias Service of {p.ref}"
            taken[(p.site, p.namespace)].setdefault(p.envoy.service.alias, (p, what))

    def errors() -> Iterator[ConfigError]:
        for p in placements:
            svc = p.envoy.service
            jwt = p.envoy.auth.jwt if p.envoy.auth else None
            if svc.type != "ClusterIP" and jwt is not None:
                yield _err(
                    tree,
                    p.source,
                    (*_where(tree, p, "envoy", "service", "type"),),
                    f"a {svc.type} Service exposes Envoy's plain-text gRPC listener outside the cluster, and "
                    "this deployment uses JWT auth: bearer tokens would cross the network in clear text; keep "
                    "type ClusterIP and reach the deployment through envoy.ingress with TLS",
                )
            if svc.alias:
                owner, what = taken[(p.site, p.namespace)][svc.alias]
                if owner is not p or not what.startswith("the alias"):
                    yield _err(
                        tree,
                        p.source,
                        (*_where(tree, p, "envoy", "service", "alias"),),
                        f"Service name {svc.alias!r} is already {what} in namespace {p.namespace!r} at site "
                        f"{p.site!r}: choose another alias",
                    )

    yield from _once(errors())


@rule
def ingress_settings(tree: Tree) -> Iterator[ConfigError]:
    """A deployment's ingress annotations stay within the site's allowlist; one TLS choice."""

    def errors() -> Iterator[ConfigError]:
        for _, p in _live(tree):
            site = tree.sites.get(p.site)
            ing = p.envoy.ingress
            if site is None or site.ingress is None or ing is None:
                continue  # no ingress at the site: the ingress_hosts rule speaks
            where = _where(tree, p, "envoy", "ingress")
            if ing.tls == "default" and ing.tls_secret:
                yield _err(
                    tree,
                    p.source,
                    (*where, "tls"),
                    "give either tls: default (the controller's default certificate) or tlsSecret, not both",
                )
            allowed = site.ingress.allowed_annotations
            for key in ing.annotations:
                if key.startswith(RESERVED_KEY_PREFIXES):
                    continue  # reserved_label_keys speaks
                if key in site.ingress.annotations:
                    yield _err(
                        tree,
                        p.source,
                        (*_where(tree, p, "envoy", "ingress", "annotations"), key),
                        f"annotation {key!r} is set by site {p.site!r} on every Ingress: a deployment may not "
                        "replace it; remove it here",
                        key=True,
                    )
                    continue
                if any(fnmatchcase(key, g) for g in allowed):
                    continue
                listed = ", ".join(allowed) if allowed else "none"
                yield _err(
                    tree,
                    p.source,
                    (*_where(tree, p, "envoy", "ingress", "annotations"), key),
                    f"annotation {key!r} is not allowed on Ingresses at site {p.site!r} (ingress.allowedAnnotations: "
                    f"{listed}); remove it, or ask the site admins to allow it in {_site_file(p.site)}",
                    key=True,
                )

    yield from _once(errors())


def _trace_entries(flags: dict[str, object]) -> list[str]:
    """The [api,]setting names a deployment's flags give to --trace-config (either spelling)."""
    out: list[str] = []
    option = flags.get("trace-config")
    if isinstance(option, dict):
        out += list(option)
    structured = flags.get("trace")
    if isinstance(structured, dict):
        for key, value in structured.items():
            if isinstance(value, dict):
                out += [f"{key},{sub}" for sub in value]
            else:
                out.append(key)
    return out


@rule
def triton_flags(tree: Tree) -> Iterator[ConfigError]:
    """Extra tritonserver options never repeat what the renderer sets from structured fields."""

    def errors() -> Iterator[ConfigError]:
        for _, p in _live(tree):
            flags: dict[str, object] = dict(p.triton.server.flags)
            where = _where(tree, p, "triton", "server", "flags")
            if "trace" in flags and "trace-config" in flags:
                yield _err(
                    tree,
                    p.source,
                    (*_where(tree, p, "triton", "server", "flags", "trace"),),
                    "give the trace settings once: either trace (structured) or trace-config (option form)",
                )
            if p.triton.server.tracing is not None:
                twice = [e for e in _trace_entries(flags) if e in TRACING_SETTINGS]
                if twice:
                    yield _err(
                        tree,
                        p.source,
                        where,
                        f"--trace-config {', '.join(twice)} is already rendered from triton.server.tracing: set it "
                        "there, or drop triton.server.tracing and give every trace setting here",
                    )

    yield from _once(errors())


def _inside(path: str, directory: str) -> bool:
    path, directory = path.rstrip("/") or "/", directory.rstrip("/") or "/"
    return path == directory or path.startswith(directory + "/")


@rule
def extra_mounts(tree: Tree) -> Iterator[ConfigError]:
    """Extra CVMFS mounts need the site's CVMFS, and land where nothing else is mounted."""

    def errors() -> Iterator[ConfigError]:
        for _, p in _live(tree):
            site = tree.sites.get(p.site)
            mounts = p.triton.extra_mounts
            if not mounts:
                continue
            where = _where(tree, p, "triton", "extraMounts")
            if site is not None and site.storage.cvmfs is None:
                yield _err(
                    tree,
                    p.source,
                    where,
                    f"site {p.site!r} offers no CVMFS (storage.cvmfs in {_site_file(p.site)}): remove the "
                    "extra mounts here, or ask the site admins to offer CVMFS",
                )
            for i, m in enumerate(mounts):
                target = m.mount_path
                if target.rstrip("/") == "" or any(_inside(target, d) for d in TRITON_RESERVED_DIRS):
                    yield _err(
                        tree,
                        p.source,
                        (*where, i, "mountPath"),
                        f"{target!r} is a directory the renderer, the image or the system uses "
                        f"({', '.join(TRITON_RESERVED_DIRS)}): choose another path, e.g. /opt/data/<name>",
                    )
                for j, other in enumerate(mounts[:i]):
                    if _inside(target, other.mount_path) or _inside(other.mount_path, target):
                        yield _err(
                            tree,
                            p.source,
                            (*where, i, "mountPath"),
                            f"{target!r} overlaps extraMounts[{j}] ({other.mount_path!r}): give each mount "
                            "its own directory",
                        )

    yield from _once(errors())


@rule
def readiness_mode(tree: Tree) -> Iterator[ConfigError]:
    """Timing fields only count with the default readiness probe; off has no probe to point at a model."""
    for d in tree.deployments:
        p = d.placements[0] if d.placements else None
        if p is None:
            continue
        mode = p.triton.probes.readiness.mode
        if mode == "default":
            continue
        doc = tree.documents[p.source]
        for field in ("period", "timeout", "failureThreshold"):
            at: JsonPath = ("triton", "probes", "readiness", field)
            if at in doc.values:
                yield _err(
                    tree,
                    p.source,
                    at,
                    f"readiness mode {mode!r} does not use {field} (only mode 'default' does): remove it",
                )
        if mode == "off" and p.triton.probes.readiness_model is not None:
            yield _err(
                tree,
                p.source,
                ("triton", "probes", "readinessModel"),
                "readiness mode 'off' renders no readiness probe, so readinessModel would be ignored: remove "
                "one of them",
            )


@rule
def admission_gate_metric(tree: Tree) -> Iterator[ConfigError]:
    """The gate's own metric: a query only with metric: query, read from the deployment's namespace only."""
    for d in tree.deployments:
        for i, p in enumerate(d.placements):
            gate = p.envoy.admission_gate
            if gate is None:
                continue
            at: JsonPath = ("envoy", "admissionGate", "query")
            if i == 0 and gate.metric == "query" and not gate.query:
                yield _err(tree, p.source, at, "metric 'query' needs a PromQL 'query'")
            if i == 0 and gate.metric != "query" and gate.query:
                yield _err(
                    tree,
                    p.source,
                    at,
                    f"'query' is only used with metric: query (metric is {gate.metric or 'unset'!r})",
                )
            if gate.metric != "query" or not gate.query:
                continue
            for problem in promql_problems(gate.query, p.namespace):
                yield _err(tree, p.source, at, f"at site {p.site!r}: {problem}")
            if i == 0:
                scrape = p.monitoring.scrape_interval
                for window in _RANGE.findall(gate.query):
                    if _promql_seconds(window) < MIN_RANGE_SCRAPES * scrape:
                        yield _err(
                            tree,
                            p.source,
                            at,
                            f"the range [{window}] spans fewer than {MIN_RANGE_SCRAPES} scrape intervals "
                            f"(monitoring.scrapeInterval is {scrape:g}s): after one missed scrape rate() answers "
                            f"nothing and the gate has no load to compare; use [{MIN_RANGE_SCRAPES * scrape:g}s] or longer",
                        )
                        break


def _site_admin_fix(site_file: Path, field: str) -> str:
    """Who can fix a problem that only a site file can: its administrators, in that file and field."""
    return f"only the site's administrators can change that: {field} in {display_path(site_file)}"


@rule
def outputs_are_not_optional(tree: Tree) -> Iterator[ConfigError]:
    """Triton's ModelOutput has no ``optional`` flag: the build would drop it without a word."""
    for d in tree.deployments:
        for p in d.placements[:1]:  # models are deployment-wide: report once
            for i, m in enumerate(p.models):
                for j, t in enumerate(m.outputs):
                    if t.optional:
                        yield _err(
                            tree,
                            p.source,
                            ("models", i, "outputs", j, "optional"),
                            f"output {t.name!r} cannot be optional: Triton's model configuration has the flag "
                            "for inputs only (a model always returns its outputs); remove it",
                        )


def _readable_file(p: Placement, rel: str) -> Path | None:
    """The file ``rel`` names if the ``_local_file`` rule accepts it (inside the experiment), else None."""
    folder = p.source.parent.resolve()
    target = (folder / rel).resolve()
    if Path(rel).is_absolute() or not target.is_relative_to(folder) or not target.is_file():
        return None
    return target


@rule
def model_files_read(tree: Tree) -> Iterator[ConfigError]:
    """Supplied ``config.pbtxt`` files and reference ``.npz`` files, read as the build and the checks would.

    See :mod:`pipelines.config.modelfiles`: what the build or ``sonic check`` would refuse
    after the sync is reported on the pull request, at the field that names the file.
    """
    from pipelines.config import modelfiles as mf

    for d in tree.deployments:
        p = d.placements[0] if d.placements else None
        if p is None:
            continue
        doc = tree.documents[p.source]
        configs = {}
        for i, m in enumerate(p.models):
            target = _readable_file(p, m.config_file) if m.config_file else None
            if target is None:
                continue
            at: JsonPath = ("models", i, "configFile")
            shown = display_path(target)
            try:
                text = mf.read_bounded(target, mf.MAX_CONFIG_BYTES).decode("utf-8")
            except mf.FileProblem as exc:
                yield _err(tree, p.source, at, f"{shown} {exc} (the deployment's authors can fix it)")
                continue
            except UnicodeDecodeError as exc:
                yield _err(
                    tree, p.source, at, f"{shown} is not UTF-8 text ({exc.reason} at byte {exc.start})"
                )
                continue
            entry = doc.data["models"][i]
            explicit = frozenset(entry) if isinstance(entry, dict) else frozenset()
            errors, cfg = mf.config_file_errors(
                doc, i, m, explicit, shown, text, d.placements, dict(tree.sites)
            )
            yield from errors
            if cfg is not None:
                configs[m.name] = cfg
        for i, c in enumerate(p.checks.models):
            model = p.model(c.name)
            if c.reference is None or model is None:
                continue  # an unknown model: checks_refer_to_models speaks
            cfg = configs.get(model.name)
            declared_in, declared_out = mf.tensors_of(cfg) if cfg is not None else ((), ())
            mbs = cfg.max_batch_size if cfg is not None else model.max_batch_size
            for part, kind, tensors in (
                ("inputs", "input", model.inputs or declared_in),
                ("outputs", "output", model.outputs or declared_out),
            ):
                rel = getattr(c.reference, part)
                target = _readable_file(p, rel)
                if target is None or not tensors:
                    continue  # missing or outside: _local_file speaks; nothing declared: nothing to compare
                at = ("checks", "models", i, "reference", part)
                shown = display_path(target)
                try:
                    headers = mf.npz_headers(mf.read_bounded(target, mf.MAX_REFERENCE_BYTES))
                except mf.FileProblem as exc:
                    yield _err(tree, p.source, at, f"{shown} {exc}")
                    continue
                for problem in mf.reference_problems(headers, tensors, kind, mbs, c.batch_size):
                    yield _err(tree, p.source, at, f"{shown}: model {model.name!r}: {problem}")


@rule
def onnx_fits_the_runtime(tree: Tree) -> Iterator[ConfigError]:
    """An ONNX artifact's IR version and opsets are ones the Triton image's ONNX Runtime reads.

    The image's release is looked up in pipelines/config/modelconfig/onnxruntime_versions.py; an image
    the table does not know is a warning (``sonic validate`` prints it), not an error.
    """
    from pipelines.config.modelfiles import onnx_runtime_findings

    yield from onnx_runtime_findings(tree).errors


@rule
def reserved_namespaces(tree: Tree) -> Iterator[ConfigError]:
    """No site grants, and no deployment uses, a namespace of the cluster or the platform."""
    for site in tree.sites.values():
        for exp_name, grant in sorted(site.experiments.items()):
            for i, ns in enumerate(grant.namespaces):
                why = reserved_reason(ns, site, prometheus=False)  # site_sanity reports Prometheus'
                if why is not None:
                    yield _err(
                        tree,
                        site.source,
                        ("experiments", exp_name, "namespaces", i),
                        f"namespace {ns!r} cannot be granted to an experiment: {why}; grant a namespace "
                        "of the experiment's own (the site's administrators can change it here)",
                    )
    for _, p in _live(tree):
        known = tree.sites.get(p.site)
        why = reserved_reason(p.namespace, known) if known is not None else None
        if why is not None:
            yield _err(
                tree,
                p.source,
                ("sites", p.site, "namespace"),
                f"namespace {p.namespace!r} cannot hold a deployment: {why}; use a namespace that site "
                f"{p.site!r} grants to {p.experiment!r} for its own deployments",
            )


@rule
def reserved_experiment_names(tree: Tree) -> Iterator[ConfigError]:
    for exp in tree.experiments.values():
        if exp.name in RESERVED_EXPERIMENT_NAMES:
            yield _err(
                tree,
                exp.source,
                ("name",),
                f"experiment name {exp.name!r} is reserved: the experiment's Argo CD AppProject takes its "
                "name, and 'default' is Argo CD's built-in project, which admits every destination; "
                "choose another name (and folder)",
            )


@rule
def images_allowed(tree: Tree) -> Iterator[ConfigError]:
    """Each container image comes from a repository the site lists (images.triton / images.envoy)."""
    for _, p in _live(tree):
        site = tree.sites.get(p.site)
        if site is None:
            continue
        for component, image, entries in (
            ("triton", p.triton.image, site.images.triton),
            ("envoy", p.envoy.image, site.images.envoy),
        ):
            if image_allowed(image, entries):
                continue
            yield _err(
                tree,
                p.source,
                _where(tree, p, component, "image"),
                f"image {image!r} (repository {image_repository(image)}) is not allowed at site {p.site!r}; "
                f"allowed {component} images: {', '.join(entries) or 'none'}; the site's administrators "
                f"can add the repository to images.{component} in {display_path(site.source)}",
            )


@rule
def host_paths(tree: Tree) -> Iterator[ConfigError]:
    """The only hostPath rendered, the site's CVMFS mount, shows CVMFS and nothing above it."""
    for site in tree.sites.values():
        cvmfs = site.storage.cvmfs
        if cvmfs is None or cvmfs.host_path is None:
            continue
        why = cvmfs_host_path_problem(cvmfs.host_path)
        if why is not None:
            yield _err(
                tree,
                site.source,
                ("storage", "cvmfs", "hostPath"),
                why + " (the site's administrators can change it here)",
            )


@rule
def application_names_unique(tree: Tree) -> Iterator[ConfigError]:
    """Two deployments whose Argo CD Applications would share a name (``cms/mini-mal``, ``cms-mini/mal``).

    One ApplicationSet (or a central Argo CD) would generate one Application for both, so one
    deployment would silently replace the other. Reported in every file involved.
    """
    by_name: dict[str, list[Placement]] = defaultdict(list)
    for _, p in _live(tree):
        by_name[application_name(p.site, p.experiment, p.name)].append(p)
    for app, users in sorted(by_name.items()):
        if len({(u.experiment, u.name) for u in users}) < 2:
            continue  # the same deployment twice: unique_names reports it
        for p in users:
            others = ", ".join(
                sorted(
                    f"{o.ref} at {o.site!r} ({display_path(o.source)})"
                    for o in users
                    if (o.experiment, o.name) != (p.experiment, p.name)
                )
            )
            yield _err(
                tree,
                p.source,
                ("name",),
                f"the Argo CD Application of this deployment at {p.site!r} would be named {app!r} "
                f"(<site>-<experiment>-<deployment>), like that of {others}; one would replace the other: "
                "rename one of the deployments",
            )


@rule
def image_digests_required(tree: Tree) -> Iterator[ConfigError]:
    """At a site with ``requireImageDigests``, every deployment image is pinned by digest.

    A tag can be re-pushed with other content by whoever controls the registry repository; a
    digest cannot. Images are deployment-wide (no per-site override), so the error is at the
    deployment's own field, once per site that requires digests.
    """
    for _, p in _live(tree):
        site = tree.sites.get(p.site)
        if site is None or not site.require_image_digests:
            continue
        doc = tree.documents[p.source]
        for component, image in (("triton", p.triton.image), ("envoy", p.envoy.image)):
            if pinned(image):
                continue
            where: JsonPath = (component, "image")
            what = "image" if where in doc.values else "the default image"
            yield _err(
                tree,
                p.source,
                where,
                f"{what} {image!r} is pinned by tag only, but site {p.site!r} requires image digests "
                f"(requireImageDigests in {display_path(site.source)}): the deployment's authors can write "
                f"{component}.image: '{image}@sha256:<digest>' (`crane digest {image}` prints the digest)",
            )
