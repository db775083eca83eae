"""SuperSONIC values (merged over the chart's defaults) -> one deployment file + a site fragment.

What each key becomes is in ``keys.yaml``; this module does the conversions the table names and
records, per key, what the table alone cannot say for one file (which GPU class was chosen, why a
host was renamed). Values copied through as they are (tolerations, affinity, labels, annotations,
Triton options) are checked against the schema field they land in, so that a bad one is reported
at its line of the values file rather than in the written deployment.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from jsonschema.exceptions import best_match

from pipelines.config import layout
from pipelines.config.errors import ConfigError, Location, format_path
from pipelines.config.images import allowed as image_allowed
from pipelines.config.images import repository as image_repository
from pipelines.config.loader import Document
from pipelines.config.model import GpuClass, Site
from pipelines.config.promql import promql_problems
from pipelines.config.schema import Validator, definition, validate_part
from pipelines.config.semantic import CONTROL_PLANE_TAINTS, RESERVED_KEY_PREFIXES, SANDBOX_ANNOTATIONS
from pipelines.config.tree import Tree
from pipelines.importers.supersonic.table import Key, Status, format_key, table
from pipelines.importers.supersonic.tritonargs import ArgsProblem, Option, command_line, options

NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(us|ms|s|m|h))+$")
HOST = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$"
)
CVMFS_ROOT = "/cvmfs"
GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"
FIXED_PORTS = {"http-port": "8000", "grpc-port": "8001", "metrics-port": "8002"}
STORAGE_TYPES = ("cvmfs-pvc", "cvmfs-hostPath", "pvc", "nfs")
TRUE, FALSE = {"true", "1", "on", "yes"}, {"false", "0", "off", "no"}


@dataclass(frozen=True)
class Note:
    """What one key of this file became, when it differs from (or refines) the table entry."""

    status: Status
    target: str
    why: str


@dataclass(frozen=True)
class FlagLine:
    """One tritonserver option of ``triton.args``, as the report lists it."""

    option: Option
    status: Status
    target: str
    why: str


@dataclass
class Converted:
    deployment: dict[str, Any]
    fragment: dict[str, Any]
    fragment_notes: list[str]
    notes: dict[Key, Note]
    flags: list[FlagLine]
    errors: list[ConfigError]
    namespace: str
    name: str
    defaults_used: tuple[Key, ...] = ()


@dataclass
class Converter:
    doc: Document
    values: dict[str, Any]
    tree: Tree
    experiment: str
    site: Site
    name_option: str | None
    namespace_option: str | None
    model_options: tuple[str, ...]
    out: dict[str, Any] = field(default_factory=dict)
    fragment: dict[str, Any] = field(default_factory=dict)
    fragment_notes: list[str] = field(default_factory=list)
    notes: dict[Key, Note] = field(default_factory=dict)
    flags: list[FlagLine] = field(default_factory=list)
    errors: list[ConfigError] = field(default_factory=list)
    defaults_used: dict[Key, None] = field(default_factory=dict)
    gpu_class_guessed: bool = False
    ns: str = ""

    # --- helpers ---------------------------------------------------------------------------------

    def v(self, *path: str) -> Any:
        node: Any = self.values
        for p in path:
            if not isinstance(node, dict) or p not in node:
                return None
            node = node[p]
        if node not in ({}, [], "", None, False) and not self.given(*path):
            self.defaults_used.setdefault(tuple(path))
        return node

    def given(self, *path: str) -> bool:
        """The values file itself sets this key (not only the chart's defaults)."""
        node: Any = self.doc.data
        for p in path:
            if not isinstance(node, dict) or p not in node:
                return False
            node = node[p]
        return True

    def put(self, key: Key, target: str, value: Any) -> None:
        """Write ``value`` at ``target`` (dotted) of the deployment (``key``: where it was read)."""
        node = self.out
        parts = target.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value

    def note(self, key: Key, status: Status, why: str, target: str = "") -> None:
        entry = table().match(key)
        self.notes[key] = Note(status, target or (entry.target if entry else ""), why)

    def fail(self, key: Key, message: str) -> None:
        """A value that cannot be imported: located in the values file, or at the chart default."""
        if self.given(*key):
            self.errors.append(self.doc.error(key, message))
        else:
            self.errors.append(
                ConfigError(
                    Location(self.doc.display, 1, 1),
                    format_path(key),
                    f"{message} (the chart's default value; set the key in the values file)",
                )
            )

    def propose(self, path: str, value: Any, why: str) -> None:
        """Add ``value`` at ``path`` of the site fragment (what the site admins must add)."""
        node = self.fragment
        parts = path.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
        self.fragment_notes.append(f"{path}: {why}")

    def checked(self, key: Key, value: Any, pointer: str, schema: str = "deployment") -> bool:
        """``value`` (read at ``key``) fits the schema definition it lands in; else each error is recorded."""
        problems = validate_part(self.doc, key, value, schema, pointer)
        self.errors.extend(problems)
        return not problems

    def own_keys(self, key: Key, mapping: Any, *, pod: bool) -> dict[str, str]:
        """Labels or annotations a deployment may set: the renderer's keys (and, on pods, the
        sandbox-loosening annotations) are left out, and the report names them."""
        values = {str(k): "" if v is None else str(v) for k, v in (mapping or {}).items()}
        reserved = [k for k in values if k.startswith(RESERVED_KEY_PREFIXES)]
        sandbox = [k for k in values if pod and k.startswith(SANDBOX_ANNOTATIONS)]
        reasons = []
        if reserved:
            reasons.append(
                f"{', '.join(reserved)} left out: keys under {', '.join(RESERVED_KEY_PREFIXES)} are the renderer's"
            )
        if sandbox:
            reasons.append(
                f"{', '.join(sandbox)} left out: the pods' security profile is the renderer's "
                "(RuntimeDefault seccomp, restricted Pod Security)"
            )
        if reasons:
            self.note(key, "changed", "; ".join(reasons))
        return {k: v for k, v in values.items() if k not in reserved and k not in sandbox}

    def own_tolerations(self, key: Key, tolerations: list[Any]) -> tuple[list[Any], str]:
        """Tolerations without the control-plane taints' (where workloads run is the site admins' call)."""
        kept = [t for t in tolerations if not (isinstance(t, dict) and t.get("key") in CONTROL_PLANE_TAINTS)]
        if len(kept) == len(tolerations):
            return kept, ""
        return kept, (
            "a toleration of the control-plane taint left out: which nodes run workloads is the site "
            "admins' decision"
        )

    # --- conversion --------------------------------------------------------------------------------

    def run(self) -> Converted:
        name = self.deployment_name()
        namespace = self.ns = self.namespace()
        self.out = {
            "name": name,
            "experiment": self.experiment,
            "description": f"Imported from SuperSONIC values file {posixpath.basename(self.doc.display)}",
            "sites": {self.site.name: {"namespace": namespace}},
        }
        gpus = self.triton(name)
        repositories, models = self.triton_args()
        if not self.errors:  # a command line we could not read says nothing about models
            self.model_repository(repositories)
            self.models(models)
        self.probes()
        self.envoy(name)
        self.autoscaling(namespace, gpus)
        self.monitoring()
        return Converted(
            self.ordered(),
            self.fragment,
            self.fragment_notes,
            self.notes,
            self.flags,
            self.errors,
            namespace,
            name,
            tuple(self.defaults_used),
        )

    def ordered(self) -> dict[str, Any]:
        order = (
            "name",
            "experiment",
            "description",
            "sites",
            "replicas",
            "triton",
            "modelRepository",
            "models",
            "envoy",
            "autoscaling",
            "monitoring",
        )
        return {k: self.out[k] for k in order if k in self.out}

    def deployment_name(self) -> str:
        key: Key = ("nameOverride",)
        override = self.v("nameOverride") or ""
        if self.name_option:
            if override:
                self.note(key, "changed", f"--name {self.name_option} was given instead", "name")
            return self.name_option
        if not override:
            self.errors.append(
                ConfigError(
                    Location(self.doc.display, 1, 1),
                    "nameOverride",
                    "no deployment name: the file has no nameOverride (Helm used the release name); "
                    "give --name NAME",
                )
            )
            return "imported"
        if not NAME.match(override):
            self.fail(
                key,
                f"{override!r} is not a deployment name (lower-case letters, digits and '-', starting "
                "with a letter, at most 40 characters); give --name NAME",
            )
            return "imported"
        return str(override)

    def namespace(self) -> str:
        if self.namespace_option:
            return self.namespace_option
        exp = self.tree.experiments.get(self.experiment)
        claim = exp.sites.get(self.site.name) if exp else None
        if claim and len(claim.namespaces) == 1:
            return claim.namespaces[0]
        grant = self.site.experiments.get(self.experiment)
        choices = claim.namespaces if claim else grant.namespaces if grant else ()
        self.errors.append(
            ConfigError(
                Location(self.doc.display, 1, 1),
                "(top level)",
                f"cannot tell the namespace at site {self.site.name!r}: "
                + (
                    f"experiment {self.experiment!r} uses {', '.join(choices)} there; give --namespace"
                    if choices
                    else f"experiment {self.experiment!r} has no namespace there (its coordinators list "
                    f"it in {layout.experiment_file(self.experiment)}, the site admins grant it in "
                    f"{layout.site_file(self.site.name)})"
                ),
            )
        )
        return "unknown"

    # --- Triton ----------------------------------------------------------------------------------

    def triton(self, name: str) -> int:
        """Image, resources, GPU class and placement; returns GPUs per pod."""
        self.put(("triton", "image"), "triton.image", self.v("triton", "image"))
        image = str(self.v("triton", "image"))
        if not image_allowed(image, self.site.images.triton):
            self.propose(
                "images.triton",
                [*self.site.images.triton, image_repository(image)],
                f"the repository of {image!r}, which the site does not list yet (docs/security.md, Ownership)",
            )
        self.quantity(("triton", "resources", "requests", "cpu"), "triton.resources.cpu")
        self.quantity(("triton", "resources", "requests", "memory"), "triton.resources.memory")
        for what, ours in (("cpu", "cpuLimit"), ("memory", "memoryLimit")):
            if self.v("triton", "resources", "limits", what) != self.v(
                "triton", "resources", "requests", what
            ):
                self.quantity(("triton", "resources", "limits", what), f"triton.resources.{ours}")
            elif self.given("triton", "resources", "limits", what):
                self.note(
                    ("triton", "resources", "limits", what),
                    "mapped",
                    "equal to the request: our limit defaults to the request",
                )
        gpus = 0
        for side in ("limits", "requests"):
            raw = self.v("triton", "resources", side, GPU_RESOURCE)
            if raw is None:
                continue
            try:
                gpus = max(gpus, int(raw))
            except (TypeError, ValueError):
                self.fail(
                    ("triton", "resources", side, GPU_RESOURCE), f"{raw!r} is not a whole number of GPUs"
                )
        selector = {str(k): str(v) for k, v in (self.v("triton", "nodeSelector") or {}).items()}
        if selector and not self.checked(("triton", "nodeSelector"), selector, "/$defs/labels", "common"):
            selector = {}
        tolerations = list(self.v("triton", "tolerations") or [])
        tol_schema = "/$defs/tritonCore/properties/tolerations"
        if tolerations and not self.checked(("triton", "tolerations"), tolerations, tol_schema):
            tolerations = []
        products = self.products()
        cls_name, cls = self.gpu_class(gpus, products, selector, tolerations)
        if cls_name:
            self.put(
                ("triton", "resources", "limits", GPU_RESOURCE),
                "triton.gpu",
                {"class": cls_name, "count": gpus},
            )
        if gpus and cls_name:
            for side in ("limits", "requests"):
                if self.given("triton", "resources", side, GPU_RESOURCE):
                    self.note(
                        ("triton", "resources", side, GPU_RESOURCE),
                        "changed",
                        f"{gpus} GPU(s) of the site's class {cls_name} ({layout.site_file(self.site.name)} "
                        "gpuClasses), which also places the pod",
                        "triton.gpu",
                    )
        # Placement the GPU class already gives is left to it; the rest is the deployment's own.
        covered_sel = cls.node_selector if cls else {}
        rest = {k: v for k, v in selector.items() if covered_sel.get(k) != v}
        if rest:
            self.put(("triton", "nodeSelector"), "triton.nodeSelector", rest)
        if selector and len(rest) < len(selector):
            self.note(
                ("triton", "nodeSelector"),
                "changed",
                f"{', '.join(sorted(set(selector) - set(rest)))} set by the site's GPU class {cls_name}"
                + (f"; {', '.join(sorted(rest))} kept in triton.nodeSelector" if rest else ""),
                "triton.nodeSelector",
            )
        covered_tol = [_toleration(t) for t in cls.tolerations] if cls else []
        not_covered = [t for t in tolerations if _toleration_dict(t) not in covered_tol]
        own, dropped = self.own_tolerations(("triton", "tolerations"), not_covered)
        if own:
            self.put(("triton", "tolerations"), "triton.tolerations", own)
        given_by_class = len(tolerations) - len(not_covered)
        reasons = [dropped] if dropped else []
        if given_by_class > 0:
            reasons.insert(0, f"{given_by_class} given by the site's GPU class {cls_name} (its tolerations)")
            if own:
                reasons.append(f"{len(own)} kept in triton.tolerations")
        if reasons:
            self.note(
                ("triton", "tolerations"),
                "changed",
                "; ".join(reasons),
                "triton.tolerations" if own else "site: gpuClasses",
            )
        annotations = self.own_keys(("triton", "annotations"), self.v("triton", "annotations"), pod=True)
        if annotations and self.checked(
            ("triton", "annotations"), annotations, "/$defs/annotations", "common"
        ):
            self.put(("triton", "annotations"), "triton.podAnnotations", annotations)
        return gpus if cls_name else 0

    def products(self) -> list[str] | None:
        """GPU products of a plain ``nvidia.com/gpu.product In [...]`` node affinity; None: no such affinity."""
        affinity = self.v("triton", "affinity") or {}
        if not affinity:
            return None
        try:
            terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
                "nodeSelectorTerms"
            ]
            (term,) = terms
            (expr,) = term["matchExpressions"]
            plain = len(affinity) == 1 and len(affinity["nodeAffinity"]) == 1 and len(term) == 1
            if plain and expr["key"] == PRODUCT_LABEL and expr["operator"] == "In" and expr["values"]:
                return [str(x) for x in expr["values"]]
        except (KeyError, TypeError, ValueError):
            pass
        if self.checked(("triton", "affinity"), affinity, "/$defs/affinity", "common"):
            self.put(("triton", "affinity"), "triton.affinity", affinity)
            self.note(
                ("triton", "affinity"),
                "mapped",
                f"carried as it is (only a required node affinity on {PRODUCT_LABEL} alone picks a GPU "
                "class); merged with the GPU class's node affinity",
                "triton.affinity",
            )
        return None

    def gpu_class(
        self, gpus: int, products: list[str] | None, selector: dict[str, Any], tolerations: list[Any]
    ) -> tuple[str | None, GpuClass | None]:
        classes = self.site.gpu_classes
        key: Key = ("triton", "affinity")
        if products is not None:
            wanted = set(products)
            exact = [n for n, c in sorted(classes.items()) if set(c.products) == wanted]
            if exact:
                chosen = exact[0]
                why = f"the site's GPU class {chosen} has exactly these products"
            else:
                chosen = _class_name(products)
                why = (
                    f"no GPU class of site {self.site.name!r} has exactly these products "
                    f"(known: {', '.join(f'{n} {list(c.products)}' for n, c in sorted(classes.items())) or 'none'}); "
                    f"the site fragment proposes class {chosen}"
                )
                self.propose(
                    f"gpuClasses.{chosen}",
                    {"products": list(products)},
                    f"nodes of {', '.join(products)} (the values file's node affinity)",
                )
            if gpus == 0:
                why += (
                    "; no GPU is requested: triton.gpu.count 0 runs the pods on the class's nodes without a "
                    "GPU, and Triton does not see the node's GPUs (with SuperSONIC it saw them, though no "
                    "request or quota accounted for them)"
                )
            self.note(key, "changed", why, f"triton.gpu: {{class: {chosen}, count: {gpus}}}")
            return chosen, classes.get(chosen) or GpuClass(
                resource=GPU_RESOURCE, node_selector={}, products=tuple(products), tolerations=()
            )
        if gpus == 0:
            return None, None
        sel = {k: str(v) for k, v in selector.items()}
        tols = [_toleration_dict(t) for t in tolerations]

        def fits(c: GpuClass) -> bool:
            return all(sel.get(k) == v for k, v in c.node_selector.items()) and all(
                _toleration(t) in tols for t in c.tolerations
            )

        fitting = [n for n, c in sorted(classes.items()) if fits(c)]
        # The class that explains the most of the file's placement; ties: the first by name.
        fitting.sort(key=lambda n: -(len(classes[n].node_selector) + len(classes[n].tolerations)))
        if fitting:
            best = fitting[0]
            weight = len(classes[best].node_selector) + len(classes[best].tolerations)
            ties = [
                n for n in fitting if len(classes[n].node_selector) + len(classes[n].tolerations) == weight
            ]
            if len(ties) > 1:
                for side in ("limits", "requests"):
                    self.note(
                        ("triton", "resources", side, GPU_RESOURCE),
                        "changed",
                        f"the file does not say which GPU; class {best} chosen of {', '.join(ties)} (all fit its "
                        "placement): check triton.gpu.class",
                        "triton.gpu",
                    )
                self.gpu_class_guessed = True
            return best, classes[best]
        chosen = "GPU"
        self.propose(
            f"gpuClasses.{chosen}",
            {"nodeSelector": sel, "tolerations": tols} if tols else {"nodeSelector": sel},
            "the values file requests GPUs with this node selector and these tolerations, "
            "and no GPU class of the site matches them",
        )
        return chosen, GpuClass(resource=GPU_RESOURCE, node_selector=sel, products=(), tolerations=())

    def quantity(self, key: Key, target: str) -> None:
        raw = self.v(*key)
        if raw is None:
            return
        text = _quantity(raw)
        if text is None:
            self.fail(key, f"{raw!r} is not a Kubernetes quantity such as 2, 500m or 4Gi")
            return
        self.put(key, target, text)

    # --- the tritonserver command line -------------------------------------------------------

    def triton_args(self) -> tuple[list[str], list[str]]:
        """Server options into triton.server; returns the model repositories and loaded models."""
        try:
            opts = options(command_line(self.v("triton", "command"), self.v("triton", "args")))
        except ArgsProblem as exc:
            self.fail(("triton", "args"), str(exc))
            return [], []
        repositories: list[str] = []
        models: list[str] = []
        server: dict[str, Any] = {}
        flags: dict[str, Any] = {}
        for opt in opts:
            entry = table().flag(opt.name)
            if entry is None:  # any other option that triton.server.flags knows
                status, why = self.extra_flag(opt.name, opt.value, flags)
                target = f"triton.server.flags.{opt.name}" if status == "mapped" else ""
                self.flags.append(FlagLine(opt, status, target, why))
                continue
            if opt.name in ("trace-level", "trace-rate"):  # the older spelling of two trace settings
                setting = opt.name.removeprefix("trace-")
                status, why = self.extra_flag("trace-config", f"{setting}={opt.value or ''}", flags)
                line = FlagLine(opt, entry.status, entry.target, entry.why)
                self.flags.append(line if status == "mapped" else FlagLine(opt, status, "", why))
                continue
            problem = self.server_option(opt, server, repositories, models)
            if problem is None:
                self.flags.append(FlagLine(opt, entry.status, entry.target, entry.why))
            else:
                status, why = problem
                self.flags.append(
                    FlagLine(opt, status, entry.target if status != "unrepresentable" else "", why)
                )
        if flags:
            server["flags"] = flags
        if server:
            self.out.setdefault("triton", {})["server"] = server
        return repositories, models

    def extra_flag(self, name: str, value: str | None, flags: dict[str, Any]) -> tuple[Status, str]:
        """One option into ``flags`` (triton.server.flags) when that field knows it and the value fits."""
        spec = _flag_specs().get(name)
        if spec is None:
            return "unrepresentable", "not a tritonserver option this importer knows"
        if "not" in spec:
            return "unrepresentable", f"not an option a deployment sets: {spec.get('description', '')}"
        candidate = _flag_value(spec, value, flags.get(name))
        problem = None if candidate is None else best_match(Validator(spec).iter_errors(candidate))
        if candidate is None or problem is not None:
            detail = (
                problem.schema.get("description", problem.message)
                if problem is not None and problem.validator == "not" and isinstance(problem.schema, dict)
                else problem.message
                if problem is not None
                else _flag_form(spec)
            )
            return "unrepresentable", f"{value!r} is not a value of triton.server.flags.{name}: {detail}"
        flags[name] = candidate
        return "mapped", ""

    def server_option(
        self, opt: Option, server: dict[str, Any], repositories: list[str], models: list[str]
    ) -> tuple[Status, str] | None:
        name, value = opt.name, opt.value
        if name in ("model-repository", "model-store"):
            if not value:
                return "unrepresentable", "no path given"
            repositories.append(value)
        elif name == "load-model":
            if value == "*":
                return "changed", "'*' loads every model: the models are the ones given with --model"
            if value:
                models.append(value)
        elif name == "model-control-mode":
            if value not in ("none", "explicit", "poll"):
                return "unrepresentable", f"{value!r} is not a model control mode (none, explicit, poll)"
            server["modelControlMode"] = value
        elif name == "log-verbose":
            level = _int(value)
            if level is None or level < 0:
                return "unrepresentable", f"{value!r} is not a verbosity level"
            server["logVerbose"] = min(level, 3)
            if level > 3:
                return "changed", f"level {level} is above Triton's most verbose level: 3"
        elif name in ("log-info", "strict-model-config", "exit-on-error", "disable-auto-complete-config"):
            flag = _bool(value)
            if flag is None:
                return "unrepresentable", f"{value!r} is not true or false"
            ours = {
                "log-info": "logInfo",
                "strict-model-config": "strictModelConfig",
                "exit-on-error": "exitOnError",
                "disable-auto-complete-config": "strictModelConfig",
            }[name]
            server[ours] = flag
        elif name in ("exit-timeout-secs", "repository-poll-secs"):
            secs = _int(value)
            if secs is None or secs < 0:
                return "unrepresentable", f"{value!r} is not a number of seconds"
            server["exitTimeout" if name == "exit-timeout-secs" else "pollInterval"] = f"{secs}s"
        elif name == "backend-config":
            backend, comma, setting = (value or "").partition(",")
            key, eq, val = setting.partition("=")
            if not comma or not eq or not re.fullmatch(r"[a-z][a-z0-9_]*", backend) or not key:
                return "unrepresentable", (
                    "only <backend>,<setting>=<value> is representable (global backend settings are not)"
                )
            server.setdefault("backendConfig", {}).setdefault(backend, {})[key] = val
        elif name in FIXED_PORTS:
            if value != FIXED_PORTS[name]:
                return "unrepresentable", f"port {value} differs from the fixed port {FIXED_PORTS[name]}"
        elif name in ("allow-metrics", "allow-http", "allow-grpc") and _bool(value) is False:
            return "unrepresentable", "cannot be turned off (see the table entry)"
        return None

    def model_repository(self, repositories: list[str]) -> None:
        enabled = bool(self.v("triton", "modelRepository", "enabled"))
        mount = str(self.v("triton", "modelRepository", "mountPath") or "").rstrip("/")
        kind = self.v("triton", "modelRepository", "storageType")
        repo: dict[str, list[Any]] = {}
        if enabled and kind == "cvmfs":
            self.note(
                ("triton", "modelRepository", "storageType"),
                "changed",
                "SuperSONIC's docs say cvmfs but its template knows only cvmfs-hostPath (the volume was "
                "silently empty); imported as CVMFS",
            )
            kind = "cvmfs-hostPath"
        if enabled and kind not in STORAGE_TYPES:
            self.fail(
                ("triton", "modelRepository", "storageType"),
                f"{kind!r} is not a storage type of the chart (known: {', '.join(STORAGE_TYPES)})",
            )
            return
        if not repositories:
            self.fail(("triton", "args"), "no --model-repository: Triton would have nothing to serve")
            return
        for path in repositories:
            clean = posixpath.normpath(path)
            if not clean.startswith("/") or ".." in clean.split("/"):
                self.fail(
                    ("triton", "args"), f"--model-repository={path}: give an absolute path without '..'"
                )
                continue
            inside = enabled and mount and (clean == mount or clean.startswith(mount + "/"))
            if not inside:
                repo.setdefault("baked", []).append(clean)
                continue
            rest = clean[len(mount) :].lstrip("/")
            if kind in ("cvmfs-pvc", "cvmfs-hostPath"):
                repo.setdefault("cvmfs", []).append(f"{CVMFS_ROOT}/{rest}")
            elif kind == "pvc":
                claim = self.v("triton", "modelRepository", "pvc", "claimName")
                if not claim:
                    self.fail(
                        ("triton", "modelRepository", "pvc", "claimName"),
                        "storageType pvc needs pvc.claimName",
                    )
                    return
                repo.setdefault("pvc", []).append({"claim": str(claim), "path": rest})
            elif kind == "nfs":
                nfs_dir = self.nfs_dir(rest)
                if nfs_dir is not None:
                    repo.setdefault("nfs", []).append(nfs_dir)
        if not repo.get("baked") and self.given("triton", "modelRepository", "enabled"):
            self.note(
                ("triton", "modelRepository", "enabled"),
                "mapped",
                "true: the --model-repository paths are read from the volume (see storageType)",
            )
        if repo.get("baked"):
            why = (
                "paths outside the mount path are inside the image: modelRepository.baked"
                if enabled
                else "no volume (modelRepository.enabled: false): the models are inside the image"
            )
            self.note(("triton", "modelRepository", "enabled"), "changed", why, "modelRepository.baked")
        if repo.get("cvmfs"):
            if mount != CVMFS_ROOT and self.given("triton", "modelRepository", "mountPath"):
                self.note(
                    ("triton", "modelRepository", "mountPath"),
                    "changed",
                    f"CVMFS is mounted at {CVMFS_ROOT} (not {mount}); the --model-repository paths are rewritten",
                    "modelRepository.cvmfs",
                )
            cvmfs = self.site.storage.cvmfs
            if cvmfs is None:
                if kind == "cvmfs-pvc":
                    self.propose(
                        "storage.cvmfs",
                        {"storageClass": "cvmfs"},
                        "the CVMFS StorageClass (SuperSONIC's is named cvmfs)",
                    )
                else:
                    self.propose(
                        "storage.cvmfs", {"hostPath": CVMFS_ROOT}, "CVMFS mounted on every node (hostPath)"
                    )
            elif (kind == "cvmfs-pvc") != (cvmfs.storage_class is not None):
                self.note(
                    ("triton", "modelRepository", "storageType"),
                    "changed",
                    f"site {self.site.name!r} mounts CVMFS by "
                    + (
                        f"StorageClass {cvmfs.storage_class}"
                        if cvmfs.storage_class
                        else f"host path {cvmfs.host_path}"
                    ),
                )
        for claim in {p["claim"] for p in repo.get("pvc", [])}:
            if claim not in self.site.storage.pvcs:
                self.propose(
                    "storage.pvcs",
                    sorted(
                        {*self.site.storage.pvcs, *self.fragment.get("storage", {}).get("pvcs", []), claim}
                    ),
                    f"claim {claim} holds the model repository",
                )
        self.out["modelRepository"] = {k: sorted(set(v)) if k != "pvc" else v for k, v in repo.items()}

    def nfs_dir(self, rest: str) -> str | None:
        """A path below the NFS mount -> our directory under <storage.nfs.path>/<experiment>."""
        server = self.v("triton", "modelRepository", "nfs", "server")
        export = str(self.v("triton", "modelRepository", "nfs", "path") or "").rstrip("/")
        key: Key = ("triton", "modelRepository", "nfs", "path")
        if not server or not export:
            self.fail(key, "storageType nfs needs nfs.server and nfs.path")
            return None
        full = posixpath.normpath(f"{export}/{rest}")
        site_nfs = self.site.storage.nfs
        base = (
            site_nfs.path.rstrip("/")
            if site_nfs
            else (posixpath.dirname(export) if posixpath.basename(export) == self.experiment else export)
        )
        mine = f"{base}/{self.experiment}"
        if not full.startswith(mine + "/"):
            self.fail(
                key,
                f"the model directory {full} is not inside {mine}: a deployment of {self.experiment!r} "
                f"reads only its experiment's directory of the site's NFS export; move the models there",
            )
            return None
        if site_nfs is None:
            self.propose(
                "storage.nfs", {"server": str(server), "path": base}, "the NFS export of the model repository"
            )
        return full[len(mine) + 1 :]

    def models(self, loaded: list[str]) -> None:
        names = list(dict.fromkeys([*loaded, *self.model_options]))
        if not names:
            self.fail(
                ("triton", "args"),
                "the values file names no model (no --load-model): give each model the deployment serves "
                "with --model NAME, so that the checks can verify it after every sync",
            )
            return
        self.out["models"] = [{"name": n} for n in names]
        server = self.out.get("triton", {}).get("server", {})
        if server.get("strictModelConfig"):
            server["strictModelConfig"] = False
            for line in self.flags:
                if line.option.name in ("strict-model-config", "disable-auto-complete-config"):
                    self.flags[self.flags.index(line)] = FlagLine(
                        line.option,
                        "changed",
                        "triton.server.strictModelConfig",
                        "imported as false: a strict configuration needs each model's inputs and outputs "
                        "declared (models[].inputs/outputs); declare them, then set it to true",
                    )

    def probes(self) -> None:
        probes: dict[str, Any] = {}
        rp = ("triton", "readinessProbe")
        if self.v(*rp, "reset"):
            self.put((*rp, "reset"), "triton.probes.readiness.mode", "kubernetesDefaults")
            for sub in (
                "initialDelaySeconds",
                "periodSeconds",
                "failureThreshold",
                "timeoutSeconds",
                "successThreshold",
                "command",
            ):
                if self.given(*rp, sub):
                    self.note((*rp, sub), "unused", "the chart ignores it when reset is true")
        else:
            readiness: dict[str, Any] = {}
            period, timeout = _int(self.v(*rp, "periodSeconds")), _int(self.v(*rp, "timeoutSeconds"))
            failures = _int(self.v(*rp, "failureThreshold"))
            if period:
                readiness["period"] = f"{period}s"
            if timeout:
                readiness["timeout"] = f"{timeout}s"
            if failures:
                readiness["failureThreshold"] = failures
            if readiness:
                probes["readiness"] = readiness
            if self.given(*rp, "reset"):
                self.note((*rp, "reset"), "mapped", "false: our readiness probe, with the timing below")
        sp = ("triton", "startupProbe")
        if self.v(*sp, "reset"):
            self.note((*sp, "reset"), "changed", "true: our startup probe with its default budget (120s)")
        else:
            period, failures = _int(self.v(*sp, "periodSeconds")), _int(self.v(*sp, "failureThreshold"))
            if period and failures:
                probes["startupTimeout"] = f"{period * failures}s"
        if probes:  # beside the readiness mode, when reset put one there
            self.out.setdefault("triton", {}).setdefault("probes", {}).update(probes)

    # --- Envoy -----------------------------------------------------------------------------------

    def envoy(self, name: str) -> None:
        envoy: dict[str, Any] = {}
        self.out["envoy"] = envoy
        if self.v("envoy", "enabled") is False:
            self.note(
                ("envoy", "enabled"), "changed", "false is not representable: Envoy always fronts Triton"
            )
        replicas = _int(self.v("envoy", "replicas"))
        if replicas:
            envoy["replicas"] = replicas
        for side, what, ours in (
            ("requests", "cpu", "cpu"),
            ("requests", "memory", "memory"),
            ("limits", "cpu", "cpuLimit"),
            ("limits", "memory", "memoryLimit"),
        ):
            self.quantity(("envoy", "resources", side, what), f"envoy.resources.{ours}")
        self.envoy_placement()
        self.envoy_service()
        self.ingress(name, envoy)
        timeout = self.v("envoy", "grpc_route_timeout")
        if timeout is not None:
            text = _duration(timeout)
            if text is None:
                self.fail(("envoy", "grpc_route_timeout"), f"{timeout!r} is not a duration such as 0s or 5s")
            else:
                envoy["timeouts"] = {"route": text}
        policy = self.v("envoy", "loadBalancerPolicy")
        if policy is not None:
            known = ("ROUND_ROBIN", "LEAST_REQUEST", "RING_HASH", "RANDOM", "MAGLEV")
            if policy not in known:
                self.fail(
                    ("envoy", "loadBalancerPolicy"), f"{policy!r} is not a policy (known: {', '.join(known)})"
                )
            else:
                envoy["lbPolicy"] = policy
        ll = ("envoy", "rate_limiter", "listener_level")
        if self.v(*ll, "enabled"):
            bucket: dict[str, Any] = {"maxTokens": _int(self.v(*ll, "max_tokens")) or 1}
            per_fill = _int(self.v(*ll, "tokens_per_fill"))
            if per_fill:
                bucket["tokensPerFill"] = per_fill
            fill = _duration(self.v(*ll, "fill_interval"))
            if fill is None:
                self.fail(
                    (*ll, "fill_interval"), f"{self.v(*ll, 'fill_interval')!r} is not a duration such as 12s"
                )
            else:
                bucket["fillInterval"] = fill
            envoy["rateLimit"] = {"connections": bucket}
        else:
            if self.given(*ll, "enabled"):
                self.note((*ll, "enabled"), "mapped", "false: no limit on new connections")
            for sub in ("max_tokens", "tokens_per_fill", "fill_interval"):
                if self.given(*ll, sub):
                    self.note((*ll, sub), "unused", "the listener-level rate limiter is off")
        if self.v("envoy", "rate_limiter", "prometheus_based", "enabled"):
            gate: dict[str, Any] = {}
            if self.given("serverAdmissionThreshold"):
                threshold = self.v("serverAdmissionThreshold")
                if isinstance(threshold, int | float) and threshold > 0:
                    gate["threshold"] = threshold
            elif self.given("serverLoadThreshold") and not self.v("keda", "enabled"):
                gate["threshold"] = self.v("serverLoadThreshold")
            if not self.v("keda", "enabled"):
                self.gate_metric(gate)
            envoy["admissionGate"] = gate
        elif self.given("serverAdmissionThreshold"):
            self.note(("serverAdmissionThreshold",), "unused", "the Prometheus-based rate limiter is off")
        self.jwt(envoy)

    def envoy_placement(self) -> None:
        selector = {str(k): str(v) for k, v in (self.v("envoy", "nodeSelector") or {}).items()}
        if selector and self.checked(("envoy", "nodeSelector"), selector, "/$defs/labels", "common"):
            self.put(("envoy", "nodeSelector"), "envoy.nodeSelector", selector)
        tolerations = list(self.v("envoy", "tolerations") or [])
        tol_schema = "/$defs/envoyCore/properties/tolerations"
        if tolerations and self.checked(("envoy", "tolerations"), tolerations, tol_schema):
            own, dropped = self.own_tolerations(("envoy", "tolerations"), tolerations)
            if dropped:
                self.note(("envoy", "tolerations"), "changed", dropped)
            if own:
                self.put(("envoy", "tolerations"), "envoy.tolerations", own)
        affinity = self.v("envoy", "affinity") or {}
        if affinity and self.checked(("envoy", "affinity"), affinity, "/$defs/affinity", "common"):
            self.put(("envoy", "affinity"), "envoy.affinity", affinity)
        annotations = self.own_keys(("envoy", "annotations"), self.v("envoy", "annotations"), pod=True)
        if annotations and self.checked(
            ("envoy", "annotations"), annotations, "/$defs/annotations", "common"
        ):
            self.put(("envoy", "annotations"), "envoy.podAnnotations", annotations)

    def envoy_service(self) -> None:
        """The client Service: its type (never exposing bearer tokens in clear text), labels, annotations."""
        svc = ("envoy", "service")
        service_type = self.v(*svc, "type")
        if service_type not in (None, "ClusterIP", "NodePort", "LoadBalancer"):
            self.fail(
                (*svc, "type"), f"{service_type!r} is not a Service type (ClusterIP, NodePort, LoadBalancer)"
            )
        elif service_type and service_type != "ClusterIP":
            if self.v("envoy", "auth", "enabled"):
                self.note(
                    (*svc, "type"),
                    "changed",
                    f"{service_type} not carried: with JWT auth (envoy.auth.enabled) bearer tokens would cross "
                    "the network in clear text (Envoy's listener is plain HTTP/2); the Service stays ClusterIP "
                    "and clients reach Envoy through envoy.ingress with TLS",
                    "envoy.service.type",
                )
            else:
                self.put((*svc, "type"), "envoy.service.type", service_type)
        elif service_type:
            self.note((*svc, "type"), "mapped", "ClusterIP: the client Service is a ClusterIP Service")
        for key, pointer in (("labels", "/$defs/labels"), ("annotations", "/$defs/annotations")):
            value = self.own_keys((*svc, key), self.v(*svc, key), pod=False)
            if value and self.checked((*svc, key), value, pointer, "common"):
                self.put((*svc, key), f"envoy.service.{key}", value)

    def ingress(self, name: str, envoy: dict[str, Any]) -> None:
        ing = ("envoy", "ingress")
        if not self.v(*ing, "enabled"):
            if self.given(*ing, "enabled"):
                self.note((*ing, "enabled"), "mapped", "false: no Ingress (clients reach Envoy's Service)")
            for sub in ("hostName", "hosts", "ingressClassName", "annotations", "tls"):
                if self.given(*ing, sub) and self.v(*ing, sub):
                    self.note((*ing, sub), "unused", "the ingress is off (envoy.ingress.enabled: false)")
            return
        hosts = self.v(*ing, "hosts") or []
        host = str(self.v(*ing, "hostName") or (hosts[0] if hosts else "")).lower()
        host_key: Key = (*ing, "hostName") if self.v(*ing, "hostName") else (*ing, "hosts")
        if not host or not HOST.match(host):
            self.fail(host_key, f"{host!r} is not a host name: the ingress needs one (hostName)")
            return
        site_ing = self.site.ingress
        class_name = str(self.v(*ing, "ingressClassName") or "")
        if site_ing is None:
            domain = host.split(".", 1)[1]
            self.propose(
                "ingress",
                {
                    "className": class_name or "nginx",
                    "domain": domain,
                    "namespace": "ingress-nginx",
                    "publishesStatus": False,
                },
                f"the site has no ingress; assumed: controller namespace ingress-nginx, ingress class "
                f"{class_name or 'nginx'}, no published status (check all three)",
            )
        else:
            domain = site_ing.domain
        wanted = f"{self.experiment}-{name}.{domain}"
        first = host.split(".", 1)[0]
        if not host.endswith("." + domain) or not first.startswith(f"{self.experiment}-"):
            self.note(
                host_key,
                "changed",
                f"{host} renamed to {wanted}: a host must start with '{self.experiment}-' and lie under the "
                f"site's ingress domain {domain} (docs/security.md); clients must use the new host",
                "envoy.ingress.host",
            )
            host = wanted
        envoy["ingress"] = {"host": host}
        if class_name:
            if (site_ing is not None and class_name == site_ing.class_name) or site_ing is None:
                self.note(
                    (*ing, "ingressClassName"),
                    "mapped",
                    "the site's ingress class",
                    "site: ingress.className",
                )
            else:
                self.put((*ing, "ingressClassName"), "envoy.ingress.className", class_name)
        self.ingress_annotations()
        tls = self.v(*ing, "tls")
        if tls:
            secrets = [str(e["secretName"]) for e in tls if isinstance(e, dict) and e.get("secretName")]
            if secrets:
                self.put((*ing, "tls"), "envoy.ingress.tlsSecret", secrets[0])
                self.note(
                    (*ing, "tls"),
                    "changed",
                    f"the certificate Secret {secrets[0]} (it must exist in namespace {self.ns})",
                    "envoy.ingress.tlsSecret",
                )
            elif site_ing is not None and (site_ing.tls_secret or site_ing.default_certificate):
                self.note(
                    (*ing, "tls"),
                    "changed",
                    "the site's TLS settings apply (ingress.tlsSecret or defaultCertificate)",
                    "site: ingress",
                )
            else:
                self.put((*ing, "tls"), "envoy.ingress.tls", "default")

    def gate_metric(self, gate: dict[str, Any]) -> None:
        """Without autoscaling, the file's load metric is the gate's own (with it, the gate shares it)."""
        query = str(self.v("serverLoadMetric") or "")
        if not query:
            return
        problems = promql_problems(query, self.ns)
        if problems:
            self.note(
                ("serverLoadMetric",),
                "changed",
                f"the query cannot run here ({problems[0]}); the admission gate uses the built-in queueLatency "
                f'metric: rewrite it with namespace="{self.ns}" in every selector and set '
                "envoy.admissionGate.metric: query",
                "envoy.admissionGate.metric",
            )
            return
        gate["metric"] = "query"
        gate["query"] = query
        self.note(
            ("serverLoadMetric",),
            "mapped",
            "the admission gate's own metric (envoy.admissionGate.metric: query with this PromQL; autoscaling is off)",
            "envoy.admissionGate.query",
        )

    def ingress_annotations(self) -> None:
        """The deployment's own Ingress annotations: the site's are left to it, the rest must be allowed."""
        key: Key = ("envoy", "ingress", "annotations")
        annotations = self.own_keys(key, self.v(*key), pod=False)
        if not annotations:
            return
        site_ing = self.site.ingress
        site_ann = site_ing.annotations if site_ing else {}
        same = sorted(k for k in annotations if site_ann.get(k) == annotations[k])
        differ = sorted(k for k in annotations if k in site_ann and site_ann[k] != annotations[k])
        extra = {k: v for k, v in annotations.items() if k not in site_ann}
        reasons = []
        if same:
            reasons.append(f"{', '.join(same)} already set by the site")
        if differ:
            reasons.append(
                f"{', '.join(f'{k} (site: {site_ann[k]}, file: {annotations[k]})' for k in differ)} set "
                "differently by the site, whose value stays: a deployment never replaces a site's annotation"
            )
        if extra and self.checked(key, extra, "/$defs/annotations", "common"):
            self.put(key, "envoy.ingress.annotations", extra)
            allowed = [*(site_ing.allowed_annotations if site_ing else ())]
            proposed = self.fragment.get("ingress", {}).get("allowedAnnotations", allowed)
            missing = [k for k in extra if not any(fnmatchcase(k, g) for g in proposed)]
            if missing:
                self.propose(
                    "ingress.allowedAnnotations",
                    [*proposed, *missing],
                    f"the imported Ingress annotations {', '.join(missing)}, which the site does not allow yet "
                    "(exact keys; a glob such as prefix/timeout-* allows a family; docs/security.md)",
                )
                reasons.append(f"{', '.join(missing)} proposed for the site's ingress.allowedAnnotations")
            reasons.append(f"{', '.join(extra)} in envoy.ingress.annotations")
        if reasons:
            self.note(
                key,
                "changed",
                "; ".join(reasons),
                "envoy.ingress.annotations" if extra else "site: ingress.annotations",
            )

    def jwt(self, envoy: dict[str, Any]) -> None:
        auth = ("envoy", "auth")
        if not self.v(*auth, "enabled"):
            for sub in ("jwt_issuer", "jwt_remote_jwks_uri", "audiences", "url"):
                if self.given(*auth, sub) and self.v(*auth, sub):
                    self.note((*auth, sub), "unused", "authentication is off (envoy.auth.enabled: false)")
            return
        audiences = [str(a) for a in self.v(*auth, "audiences") or []]
        if not audiences:
            self.fail(
                (*auth, "audiences"), "give at least one audience: a token for any audience would be accepted"
            )
        envoy["auth"] = {
            "jwt": {
                "issuer": str(self.v(*auth, "jwt_issuer") or ""),
                "jwksUri": str(self.v(*auth, "jwt_remote_jwks_uri") or ""),
                "audiences": audiences,
            }
        }
        jwks = urlsplit(str(self.v(*auth, "jwt_remote_jwks_uri") or ""))
        url = str(self.v(*auth, "url") or "")
        if url and jwks.hostname and url != jwks.hostname:
            self.note(
                (*auth, "url"),
                "changed",
                f"the key set is fetched from {jwks.hostname} (the host of jwksUri), not {url}",
            )

    # --- KEDA and the metric -----------------------------------------------------------------

    def autoscaling(self, namespace: str, gpus: int) -> None:
        keda = ("keda",)
        gate = "admissionGate" in self.out["envoy"]
        if not self.v("keda", "enabled"):
            if self.given("keda", "enabled"):
                self.note(
                    ("keda", "enabled"),
                    "mapped",
                    "false: a fixed number of replicas (triton.replicas)",
                    "replicas",
                )
            self.out["replicas"] = _int(self.v("triton", "replicas")) or 0
            for sub in self.doc.data.get("keda", {}) if isinstance(self.doc.data.get("keda"), dict) else {}:
                if sub != "enabled" and table().match((*keda, sub)) is not None:
                    self.note((*keda, sub), "unused", "autoscaling is off (keda.enabled: false)")
            for key in ("serverLoadThreshold", "serverLoadMetric"):
                if self.given(key) and not gate:
                    self.note((key,), "unused", "neither autoscaling nor the admission gate is on")
        else:
            if self.given("triton", "replicas"):
                self.note(
                    ("triton", "replicas"), "unused", "keda.enabled: the autoscaler decides the replicas"
                )
            low = _int(self.v("keda", "minReplicaCount"))
            low = 0 if self.v("keda", "zeroIdleReplicas") else (low if low is not None else 1)
            scaling: dict[str, Any] = {"min": low, "max": _int(self.v("keda", "maxReplicaCount")) or 1}
            for key, ours in (("pollingInterval", "pollingInterval"), ("cooldownPeriod", "cooldownPeriod")):
                secs = _int(self.v("keda", key))
                if secs:
                    scaling[ours] = f"{secs}s"
            for side, ours in (("scaleUp", "scaleUp"), ("scaleDown", "scaleDown")):
                behavior: dict[str, Any] = {}
                window = _int(self.v("keda", side, "stabilizationWindowSeconds"))
                period = _int(self.v("keda", side, "periodSeconds"))
                step = _int(self.v("keda", side, "stepsize"))
                if window is not None:
                    behavior["stabilization"] = f"{window}s"
                if period:
                    behavior["period"] = f"{period}s"
                if step:
                    behavior["step"] = step
                scaling[ours] = behavior
            self.metric(scaling, namespace)
            if self.given("serverLoadThreshold"):
                threshold = self.v("serverLoadThreshold")
                if isinstance(threshold, int | float) and threshold > 0:
                    scaling["threshold"] = threshold
            self.out["autoscaling"] = scaling
        own = bool(self.v("prometheus", "enabled"))  # the in-namespace Prometheus answers them
        if (self.v("keda", "enabled") or gate) and self.site.prometheus is None and not own:
            self.prometheus_fragment()
        self.quota(gpus)

    def metric(self, scaling: dict[str, Any], namespace: str) -> None:
        query = str(self.v("serverLoadMetric") or "")
        scaling["metric"] = "queueLatency"
        if not query:
            return
        problems = promql_problems(query, namespace)
        if problems:
            self.note(
                ("serverLoadMetric",),
                "changed",
                f"the query cannot run here ({problems[0]}); imported as the built-in queueLatency metric: "
                f'rewrite it with namespace="{namespace}" in every selector and set autoscaling.metric: query',
            )
            return
        scaling["metric"] = "query"
        scaling["query"] = query
        self.note(
            ("serverLoadMetric",), "mapped", "autoscaling.metric: query with this PromQL", "autoscaling.query"
        )

    def prometheus_fragment(self) -> None:
        ext = ("prometheus", "external")
        if not self.v(*ext, "enabled") or not self.v(*ext, "url"):
            self.errors.append(
                ConfigError(
                    Location(self.doc.display, 1, 1),
                    "keda.enabled",
                    f"autoscaling and the admission gate query Prometheus, but site {self.site.name!r} "
                    "declares none and the values file names no external one (prometheus.external): "
                    f"ask the site admins to declare it in {layout.site_file(self.site.name)}",
                )
            )
            return
        url = str(self.v(*ext, "url"))
        scheme = str(self.v(*ext, "scheme") or "https")
        port = self.v(*ext, "port")
        full = url if "://" in url else f"{scheme}://{url}" + (f":{port}" if port else "")
        host = urlsplit(full).hostname or ""
        parts = host.split(".")
        in_cluster = len(parts) >= 3 and parts[2] == "svc"
        namespace = parts[1] if in_cluster else "monitoring"
        self.propose(
            "prometheus",
            {"url": full, "namespace": namespace},
            "the Prometheus that autoscaling and the admission gate query"
            + ("" if in_cluster else "; assumed: it runs in namespace monitoring (check it)"),
        )

    def quota(self, gpus: int) -> None:
        grant = self.site.experiments.get(self.experiment)
        if not gpus or grant is None:
            return
        name = self.out["name"]
        mine = gpus * (
            self.out["autoscaling"]["max"] if "autoscaling" in self.out else self.out.get("replicas", 0)
        )
        others = sum(
            p.gpus_per_pod * p.max_replicas
            for p in self.tree.placements_at(self.site.name)
            if p.experiment == self.experiment and p.name != name
        )
        if others + mine > grant.gpu_quota:
            self.propose(
                f"experiments.{self.experiment}.gpuQuota",
                others + mine,
                f"{mine} GPUs for this deployment at most replicas, {others} for the experiment's other "
                f"deployments here; the quota is {grant.gpu_quota}",
            )

    def monitoring(self) -> None:
        """SuperSONIC's in-namespace Prometheus, Grafana and tracing -> the in-namespace stack."""
        prometheus = bool(self.v("prometheus", "enabled"))
        if prometheus:
            self.put(("prometheus", "enabled"), "monitoring.prometheus.enabled", True)
        if self.v("grafana", "enabled"):
            if prometheus:
                self.put(("grafana", "enabled"), "monitoring.grafana.enabled", True)
                self.grafana_host()
            else:
                self.note(
                    ("grafana", "enabled"),
                    "changed",
                    "not run in the namespace: the file's Grafana reads an external Prometheus, and ours reads "
                    "only the in-namespace one; the dashboard is provisioned for the site's Grafana "
                    "(monitoring.dashboard). For a Grafana here, set monitoring.prometheus.enabled and "
                    "monitoring.grafana.enabled (the in-namespace Prometheus then answers KEDA and the gate)",
                    "monitoring.dashboard",
                )
                self.unused_below(
                    ("grafana", "ingress"), "Grafana is not run in the namespace (see grafana.enabled)"
                )
                self.unused_below(
                    ("grafana", "grafana.ini", "server"),
                    "Grafana is not run in the namespace (see grafana.enabled)",
                )
        tracing = [k for k in ("opentelemetry-collector", "tempo") if self.v(k, "enabled")]
        if tracing:
            self.put((tracing[0], "enabled"), "monitoring.tracing.enabled", True)
        rate = self.v("envoy", "tracing_sampling_rate")
        key: Key = ("envoy", "tracing_sampling_rate")
        if rate is not None and tracing:
            if self.checked(key, rate, "/$defs/envoy/properties/tracing/properties/samplingRate"):
                self.put(key, "envoy.tracing.samplingRate", rate)
        elif rate is not None:
            self.note(
                key,
                "unused",
                "no collector: opentelemetry-collector and tempo are off, so SuperSONIC's Envoy traced nothing "
                "either; set envoy.tracing (collector) or monitoring.tracing.enabled to trace",
            )

    def unused_below(self, key: Key, why: str) -> None:
        """Every key the file sets under ``key`` is reported unused, with ``why``."""
        node: Any = self.doc.data
        for p in key:
            node = node.get(p) if isinstance(node, dict) else None
        for sub in node if isinstance(node, dict) else {}:
            self.note((*key, str(sub)), "unused", why)

    def grafana_host(self) -> None:
        """grafana.ingress -> monitoring.grafana.host, under the same host rules as Envoy's."""
        ing = ("grafana", "ingress")
        if not self.v(*ing, "enabled"):
            return
        hosts = self.v(*ing, "hosts") or []
        host_key: Key = (*ing, "hostName") if self.v(*ing, "hostName") else (*ing, "hosts")
        host = str(self.v(*ing, "hostName") or (hosts[0] if hosts else "")).lower()
        if not host or not HOST.match(host):
            self.fail(host_key, f"{host!r} is not a host name: Grafana's ingress needs one (hostName)")
            return
        site_ing = self.site.ingress
        domain = site_ing.domain if site_ing else self.fragment.get("ingress", {}).get("domain")
        if site_ing is not None and not (site_ing.tls_secret or site_ing.default_certificate):
            self.note(
                (*ing, "enabled"),
                "changed",
                f"no Ingress to Grafana: site {self.site.name!r} has no TLS for its ingress hosts and the "
                "login would cross it in clear text (reach Grafana with kubectl port-forward, or ask the "
                "site admins for ingress.tlsSecret or defaultCertificate)",
                "monitoring.grafana",
            )
            return
        if domain is None:
            self.note(
                (*ing, "enabled"),
                "changed",
                f"no Ingress to Grafana: site {self.site.name!r} offers no ingress (reach it with kubectl port-forward)",
                "monitoring.grafana",
            )
            return
        wanted = f"{self.experiment}-{self.out['name']}-grafana.{domain}"
        first = host.split(".", 1)[0]
        if not host.endswith("." + domain) or not first.startswith(f"{self.experiment}-"):
            self.note(
                host_key,
                "changed",
                f"{host} renamed to {wanted}: a host must start with '{self.experiment}-' and lie under the "
                f"site's ingress domain {domain} (docs/security.md)",
                "monitoring.grafana.host",
            )
            host = wanted
        self.put(host_key, "monitoring.grafana.host", host)

        password = (
            self.doc.data.get("grafana", {}).get("adminPassword")
            if self.given("grafana", "adminPassword")
            else None
        )
        if password and password != "admin":
            self.note(
                ("grafana", "adminPassword"),
                "unrepresentable",
                "a password in a values file is published with it: remove it, change it, and keep "
                "Grafana's credentials in a Secret",
            )


# --- small conversions ---------------------------------------------------------------------------


@cache
def _flag_specs() -> dict[str, dict[str, Any]]:
    """The options triton.server.flags knows, each with its schema (references inlined)."""
    props: dict[str, dict[str, Any]] = definition("deployment", "/$defs/tritonFlags")["properties"]
    return props


def _flag_value(spec: dict[str, Any], text: str | None, current: Any) -> Any:
    """One occurrence of an option, in triton.server.flags' form, added to ``current`` (None: no value).

    A list-valued option collects its repetitions; ``<setting>=<value>`` options (--trace-config,
    --metrics-config) fill a mapping, each setting by its own type.
    """
    kind = spec.get("type")
    if kind == "object":
        setting, eq, raw = (text or "").partition("=")
        sub = spec.get("properties", {}).get(setting)
        if not eq or not isinstance(sub, dict):
            return None
        mapping = dict(current) if isinstance(current, dict) else {}
        value = _flag_value(sub, raw, mapping.get(setting))
        if value is None:
            return None
        mapping[setting] = value
        return mapping
    if kind == "array":
        item = _flag_scalar(spec.get("items", {}), text)
        return None if item is None else [*(current if isinstance(current, list) else []), item]
    if "anyOf" in spec and text is not None:  # one value, or a list when repeated (trace level)
        return text if current is None else [*(current if isinstance(current, list) else [current]), text]
    return _flag_scalar(spec, text)


def _flag_form(spec: dict[str, Any]) -> str:
    """What an option's value must look like, for the report."""
    kind = spec.get("type")
    if kind == "object":
        return f"give <setting>=<value> with a setting of: {', '.join(spec.get('properties', {}))}"
    if kind == "array":
        return _flag_form(spec.get("items", {}))
    return {"boolean": "true or false", "integer": "a whole number", "number": "a number"}.get(
        str(kind), str(spec.get("description", "a value"))
    )


def _flag_scalar(spec: dict[str, Any], text: str | None) -> Any:
    kind = spec.get("type")
    if kind == "boolean":
        return _bool(text)
    if text is None:
        return None
    if kind == "integer":
        return int(text) if re.fullmatch(r"-?[0-9]+", text.strip()) else None
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            return None
    return text


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _bool(value: str | None) -> bool | None:
    if value is None:
        return True  # a bare flag
    low = value.strip().lower()
    return True if low in TRUE else False if low in FALSE else None


def _quantity(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = str(int(value)) if value.is_integer() else f"{round(value * 1000)}m"
    else:
        text = str(value).strip()
    return text if QUANTITY.match(text) else None


def _duration(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return f"{value:g}s"
    text = str(value).strip()
    return text if DURATION.match(text) else None


def _toleration(t: Any) -> dict[str, str]:
    return {
        k: v
        for k, v in (("key", t.key), ("operator", t.operator), ("value", t.value), ("effect", t.effect))
        if v
    }


def _toleration_dict(t: Any) -> dict[str, str]:
    if not isinstance(t, dict):
        return {}
    out = {k: str(t[k]) for k in ("key", "operator", "value", "effect") if t.get(k) not in (None, "")}
    out.setdefault("operator", "Equal")
    return out


def _class_name(products: list[str]) -> str:
    """A class name for a set of products: NVIDIA-A10 + NVIDIA-L4 -> A10-L4."""
    short = [p.removeprefix("NVIDIA-") for p in products]
    return "-".join(re.sub(r"[^A-Za-z0-9_.-]", "", s) for s in short) or "GPU"


def key_text(key: Key) -> str:
    return format_key(key)
