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
from pathlib import Path
from urllib.parse import urlsplit

from pipelines.config.errors import ConfigError, JsonPath, display_path
from pipelines.config.images import pinned
from pipelines.config.model import Deployment, SiteDeployment
from pipelines.config.promql import promql_problems
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


def _where(tree: Tree, p: SiteDeployment, *path: str | int) -> JsonPath:
    """The path of a setting of ``p`` as written: the site override if there is one, else deployment-wide."""
    site_path: JsonPath = ("sites", p.site, *path)
    doc = tree.documents[p.source]
    return site_path if site_path in doc.values else tuple(path)


def _live(tree: Tree) -> Iterator[tuple[Deployment, SiteDeployment]]:
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
                f"unknown experiment {d.experiment!r} (no experiments/{d.experiment}/experiment.yaml); "
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
                f"unknown site {p.site!r} (no gitops/sites/{p.site}.yaml); "
                + _hint(p.site, list(tree.sites)),
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
                f"(the site admits: {', '.join(sorted(site.experiments)) or 'none'})",
                key=True,
            )
            continue
        if p.namespace not in grant.namespaces:
            yield _err(
                tree,
                p.source,
                (*where, "namespace"),
                f"namespace {p.namespace!r} is not granted to {p.experiment!r} "
                f"at site {p.site!r} (granted: {', '.join(grant.namespaces)})",
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
                f"experiments/{p.experiment}/experiment.yaml (it lists: {', '.join(sorted(exp.sites))})",
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
                f"{cls!r} is not a GPU class of site {p.site!r}; " + _hint(cls, list(site.gpu_classes)),
            )


@rule
def gpu_quota(tree: Tree) -> Iterator[ConfigError]:
    claims: dict[tuple[str, str], list[SiteDeployment]] = defaultdict(list)
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
                field = "autoscaling" if p.autoscaling else "replicas"
                yield _err(
                    tree,
                    p.source,
                    _where(tree, p, field),
                    f"GPU quota of {exp!r} at {site_name!r} exceeded: {total} GPUs needed at most replicas "
                    f"({parts}), quota is {quota}",
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


@rule
def ingress_hosts(tree: Tree) -> Iterator[ConfigError]:
    """Ingress hosts: not a site's own, prefixed with the experiment, and each claimed once.

    A conflict is reported in every file that claims the host, so the victim is not the only
    one told (and the pull request that takes the host fails its own validation).
    """
    reserved = _site_hosts(tree)
    claims: dict[str, list[SiteDeployment]] = defaultdict(list)
    for _, p in _live(tree):
        ing = p.envoy.ingress
        if ing is None:
            continue
        host = ing.host.lower()
        where = (*_where(tree, p, "envoy", "ingress"), "host")
        claims[host].append(p)
        if host in reserved:
            yield _err(tree, p.source, where, f"host {ing.host!r} is reserved: it is the {reserved[host]}")
        if not host.split(".", 1)[0].startswith(f"{p.experiment}-"):
            yield _err(
                tree,
                p.source,
                where,
                f"host {ing.host!r} must start with '{p.experiment}-' (the experiment's prefix, "
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
                f"host {ing.host!r} must be under the site's ingress domain {site.ingress.domain!r}",
            )
    for host, users in claims.items():
        owners = {(u.source, u.site) for u in users}
        if len(owners) < 2:
            continue
        for p in users:
            others = ", ".join(
                sorted(
                    f"{o.experiment}/{o.name} at {o.site!r} ({display_path(o.source)})"
                    for o in users
                    if (o.source, o.site) != (p.source, p.site)
                )
            )
            yield _err(
                tree,
                p.source,
                (*_where(tree, p, "envoy", "ingress"), "host"),
                f"ingress host {host!r} is also claimed by {others}: each host belongs to one deployment",
            )


JWT_WITHOUT_TLS = (
    "the deployment uses JWT auth (envoy.auth.jwt) but this Ingress has no TLS, so bearer tokens would "
    "cross the network in clear text; give envoy.ingress.tlsSecret, or have the admins of site "
    "'{site}' set ingress.tlsSecret or ingress.defaultCertificate: true in gitops/sites/{site}.yaml"
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
        if ing.tls_secret or site.ingress.tls_secret or site.ingress.default_certificate:
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
        if where is None or where.prometheus is not None:
            continue
        if p.autoscaling is not None:
            yield _err(
                tree,
                p.source,
                _where(tree, p, "autoscaling"),
                f"autoscaling needs Prometheus, but site {p.site!r} declares none",
            )
        if p.envoy.admission_gate is not None and p.envoy.admission_gate.enabled:
            yield _err(
                tree,
                p.source,
                ("envoy", "admissionGate"),
                f"the admission gate queries Prometheus, but site {p.site!r} declares none (set enabled: false)",
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


@rule
def model_rules(tree: Tree) -> Iterator[ConfigError]:
    for d in tree.deployments:
        p = d.placements[0] if d.placements else None
        if p is None:
            continue
        for i, m in enumerate(p.models):
            at: JsonPath = ("models", i)
            db = m.dynamic_batching
            if db is not None and m.max_batch_size == 0:
                yield _err(
                    tree, p.source, (*at, "dynamicBatching"), "dynamic batching needs maxBatchSize > 0"
                )
            if db is not None:
                for j, size in enumerate(db.preferred_batch_size):
                    if size > m.max_batch_size:
                        yield _err(
                            tree,
                            p.source,
                            (*at, "dynamicBatching", "preferredBatchSize", j),
                            f"preferred batch size {size} is above maxBatchSize {m.max_batch_size}",
                        )
            if m.artifact is None and not _has_in_place(p):
                yield _err(
                    tree,
                    p.source,
                    (*at, "name"),
                    f"model {m.name!r} has no artifact and the deployment has no "
                    "in-place repository (modelRepository.cvmfs/pvc/nfs/baked) to find it in",
                )
            if (
                m.artifact is None
                and m.config_file is None
                and not m.inputs
                and p.triton.server.strict_model_config
            ):
                yield _err(
                    tree, p.source, at, f"model {m.name!r} declares no inputs while strictModelConfig is on"
                )
            if m.artifact is not None and "://" not in m.artifact.source:
                yield from _local_file(tree, p, (*at, "artifact", "source"), m.artifact.source)
            elif m.artifact is not None:
                yield from _remote_artifact(tree, p, (*at, "artifact"), m.artifact.source, m.artifact.size)
            if m.config_file is not None:
                yield from _local_file(tree, p, (*at, "configFile"), m.config_file)
        for d_p in d.placements:
            for i, m in enumerate(d_p.models):
                if m.instances.kind == "GPU" and d_p.triton.gpu is None:
                    yield _err(
                        tree,
                        d_p.source,
                        ("models", i, "instances", "kind"),
                        f"GPU instances need a GPU: set triton.gpu (missing at site {d_p.site!r})",
                    )
                    break


def _local_file(tree: Tree, p: SiteDeployment, path: JsonPath, rel: str) -> Iterator[ConfigError]:
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
            f"{rel!r} points outside experiments/{folder.name}/: "
            "give a path relative to the deployment file, inside the experiment's folder",
        )
    elif not target.is_file():
        yield _err(tree, p.source, path, f"file {rel!r} not found next to the deployment")


def _remote_artifact(
    tree: Tree, p: SiteDeployment, at: JsonPath, source: str, size: int | None
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


def _has_in_place(p: SiteDeployment) -> bool:
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
    if source.parent.name == "sites":
        return "the site's administrators"
    if source.name == "experiment.yaml":
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
