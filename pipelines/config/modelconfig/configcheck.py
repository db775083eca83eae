"""Checks on a Triton model config that need no model file: batching, instances, and the declaration.

* :func:`check_config` — internal consistency of a ``ModelConfig`` and its fit to the sites the
  deployment runs at (a GPU instance group needs a GPU there, of a class the site offers).
* :func:`compare_declared` — a ``config.pbtxt`` that was not generated (a supplied file, or one in
  an in-place repository) against what the deployment declares about the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2 as mc

from pipelines.config.errors import ConfigError
from pipelines.config.model import Model, Placement, Site, Tensor
from pipelines.config.modelconfig.pbtxt import dtype_name, kind_name, platform_of
from pipelines.config.modelconfig.where import Where


@dataclass(frozen=True)
class GpuPlacement:
    """What a check needs to know about one site a deployment runs at."""

    site: str
    gpu_class: str | None
    gpu_count: int
    site_classes: frozenset[str] | None  # None when the site file is unknown (reported elsewhere)


def placements_of(deployments: Iterable[Placement], sites: Mapping[str, Site]) -> list[GpuPlacement]:
    """The placements to check, from the typed deployment and the site files."""
    out = []
    for p in deployments:
        site = sites.get(p.site)
        classes = frozenset(site.gpu_classes) if site is not None else None
        gpu = p.triton.gpu
        out.append(GpuPlacement(p.site, gpu.gpu_class if gpu else None, gpu.count if gpu else 0, classes))
    return out


def check_config(
    cfg: mc.ModelConfig, where: Where, placements: Sequence[GpuPlacement], *, strict: bool
) -> list[ConfigError]:
    """Every inconsistency in ``cfg`` and between ``cfg`` and the placements, as located errors."""
    errors: list[ConfigError] = []
    if cfg.name and cfg.name != where.model:
        errors.append(
            where.error("name", f"the config names the model {cfg.name!r}: it must be {where.model!r}")
        )
    mbs = cfg.max_batch_size
    if mbs < 0:
        errors.append(where.error("max_batch_size", f"maximum batch size {mbs} is negative"))
    if cfg.HasField("dynamic_batching"):
        if mbs == 0:
            errors.append(where.error("dynamic_batching", "dynamic batching needs a maximum batch size > 0"))
        for j, size in enumerate(cfg.dynamic_batching.preferred_batch_size):
            if mbs > 0 and size > mbs:
                errors.append(
                    where.error(
                        "preferred_batch_size",
                        f"preferred batch size {size} is above the maximum batch size {mbs}",
                        j,
                    )
                )
    if strict and not cfg.input:
        errors.append(
            where.error(
                "input", "no inputs are given while strictModelConfig is on (Triton would refuse the model)"
            )
        )
    if strict and not cfg.output:
        errors.append(
            where.error(
                "output", "no outputs are given while strictModelConfig is on (Triton would refuse the model)"
            )
        )
    errors.extend(_check_instances(cfg, where, placements))
    return errors


def _check_instances(
    cfg: mc.ModelConfig, where: Where, placements: Sequence[GpuPlacement]
) -> list[ConfigError]:
    errors: list[ConfigError] = []
    for group in cfg.instance_group:
        kind = kind_name(group.kind)
        for pl in placements:
            if kind == "GPU" and pl.gpu_class is None:
                errors.append(
                    where.error(
                        "instances",
                        f"instance kind GPU needs a GPU, but at site {pl.site!r} the deployment has no triton.gpu",
                    )
                )
            elif kind == "GPU" and pl.gpu_count == 0:
                errors.append(
                    where.error(
                        "instances",
                        f"instance kind GPU needs a GPU, but at site {pl.site!r} the deployment requests none "
                        "(triton.gpu.count: 0)",
                    )
                )
            elif kind == "GPU" and pl.site_classes is not None and pl.gpu_class not in pl.site_classes:
                offered = ", ".join(sorted(pl.site_classes)) or "none"
                errors.append(
                    where.error(
                        "instances",
                        f"instance kind GPU at site {pl.site!r}: GPU class {pl.gpu_class!r} is not offered "
                        f"by the site (it offers: {offered})",
                    )
                )
            for gpu_id in group.gpus:
                if gpu_id >= max(pl.gpu_count, 0) or gpu_id < 0:
                    errors.append(
                        where.error(
                            "instances",
                            f"instance group uses GPU {gpu_id}, but at site {pl.site!r} each replica gets "
                            f"{pl.gpu_count} GPU(s) (triton.gpu.count)",
                        )
                    )
    return errors


def _tensors(cfg_tensors: Iterable[mc.ModelInput | mc.ModelOutput]) -> dict[str, tuple[str, list[int]]]:
    return {t.name: (dtype_name(t.data_type), list(t.dims)) for t in cfg_tensors}


def compare_declared(
    model: Model, explicit: frozenset[str], cfg: mc.ModelConfig, decl: Where, other: str
) -> list[ConfigError]:
    """Differences between the deployment's declaration of ``model`` and a ``config.pbtxt`` at ``other``.

    Only what the deployment states is compared: ``explicit`` holds the keys written in the
    model's YAML entry (defaults such as ``maxBatchSize: 0`` are not a statement). Errors are
    located at the declaration.
    """
    errors: list[ConfigError] = []
    if "platform" in explicit and platform_of(cfg) != model.platform:
        errors.append(
            decl.error(
                "platform", f"declared platform {model.platform!r} but {other} has {platform_of(cfg)!r}"
            )
        )
    if "maxBatchSize" in explicit and cfg.max_batch_size != model.max_batch_size:
        errors.append(
            decl.error(
                "max_batch_size",
                f"declared maxBatchSize {model.max_batch_size} but {other} has max_batch_size {cfg.max_batch_size}",
            )
        )
    for kind, declared, actual in (
        ("input", model.inputs, _tensors(cfg.input)),
        ("output", model.outputs, _tensors(cfg.output)),
    ):
        errors.extend(_compare_tensors(kind, declared, actual, decl, other, exact=kind == "input"))
    return errors


def _compare_tensors(
    kind: str,
    declared: Sequence[Tensor],
    actual: Mapping[str, tuple[str, list[int]]],
    decl: Where,
    other: str,
    *,
    exact: bool,
) -> list[ConfigError]:
    if not declared:
        return []
    errors: list[ConfigError] = []
    for j, t in enumerate(declared):
        found = actual.get(t.name)
        if found is None:
            known = ", ".join(sorted(actual)) or "none"
            errors.append(
                decl.error(
                    kind,
                    f"{kind} {t.name!r} is declared but {other} has no such {kind} (it has: {known})",
                    j,
                    t.name,
                )
            )
            continue
        dtype, dims = found
        if dtype != t.dtype:
            errors.append(
                decl.error(
                    f"{kind}.data_type",
                    f"{kind} {t.name!r}: declared dtype {t.dtype} but {other} has {dtype}",
                    j,
                    t.name,
                )
            )
        if dims != list(t.dims):
            errors.append(
                decl.error(
                    f"{kind}.dims",
                    f"{kind} {t.name!r}: declared dims {list(t.dims)} but {other} has {dims}",
                    j,
                    t.name,
                )
            )
    extra = sorted(set(actual) - {t.name for t in declared})
    if exact and extra:
        errors.append(decl.error(kind, f"{other} has {kind}s that are not declared: {', '.join(extra)}"))
    return errors
