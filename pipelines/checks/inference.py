"""One real inference per model: synthetic inputs must give well-formed outputs, and reference
inputs must give the reference outputs within the declared tolerances."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pipelines.checks.connection import describe
from pipelines.checks.context import Context, timed
from pipelines.checks.result import CheckResult, Status
from pipelines.checks.tensors import (
    Array,
    ModelPlan,
    TensorError,
    infer_inputs,
    load_npz,
    requested_outputs,
    synthetic_inputs,
)
from pipelines.config.model import Placement, Reference

Outcome = tuple[Status, str, dict[str, object]]


def _infer(ctx: Context, plan: ModelPlan, arrays: Mapping[str, Array]) -> dict[str, Array]:
    result = ctx.client.infer(
        plan.name,
        infer_inputs(plan, arrays),
        outputs=requested_outputs(plan),
        headers=ctx.endpoint.headers(),
        client_timeout=ctx.timeout(),
    )
    out: dict[str, Array] = {}
    for t in plan.model.outputs:
        arr = result.as_numpy(t.name)
        if arr is not None:
            out[t.name] = arr
    return out


def synthetic(ctx: Context, plan: ModelPlan) -> CheckResult:
    """Seeded synthetic inputs: every declared output comes back, with its shape, and finite."""

    def body() -> Outcome:
        try:
            arrays = synthetic_inputs(plan)
        except TensorError as exc:
            return "fail", str(exc), {}
        try:
            outputs = _infer(ctx, plan, arrays)
        except TensorError as exc:
            return "fail", str(exc), {}
        except Exception as exc:
            return "fail", f"inference failed: {describe(exc)}", {}
        problems = []
        batch = [plan.batch_size] if plan.model.max_batch_size > 0 else []
        for t in plan.model.outputs:
            arr = outputs.get(t.name)
            if arr is None:
                problems.append(f"output {t.name}: missing from the response")
                continue
            want = [*batch, *t.dims]
            if len(arr.shape) != len(want) or any(
                w not in (-1, s) for w, s in zip(want, arr.shape, strict=False)
            ):
                problems.append(f"output {t.name}: shape {list(arr.shape)}, declared {want}")
            elif np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
                problems.append(
                    f"output {t.name}: {int(np.size(arr) - np.isfinite(arr).sum())} NaN/Inf values"
                )
        shapes = {k: list(v.shape) for k, v in arrays.items()}
        if problems:
            return "fail", "; ".join(problems), {"input_shapes": shapes}
        return (
            "pass",
            f"batch {plan.batch_size}: {len(outputs)} output(s) well-formed",
            {"input_shapes": shapes},
        )

    return timed("model.infer", plan.name, body)


def reference(ctx: Context, p: Placement, plan: ModelPlan) -> CheckResult:
    """The reference inputs give the reference outputs within atol/rtol; reports the largest difference."""
    ref = plan.reference
    if ref is None:
        return CheckResult("model.reference", plan.name, "skip", "no reference files declared")

    def body() -> Outcome:
        try:
            inputs = load_npz(p.source.parent / ref.inputs)
            expected = load_npz(p.source.parent / ref.outputs)
            outputs = _infer(ctx, plan, inputs)
        except TensorError as exc:
            return "fail", str(exc), {}
        except Exception as exc:
            return "fail", f"inference failed: {describe(exc)}", {}
        return compare(outputs, expected, ref)

    return timed("model.reference", plan.name, body)


def compare(outputs: Mapping[str, Array], expected: Mapping[str, Array], ref: Reference) -> Outcome:
    """Each expected array against the served output: shapes equal, values within tolerance."""
    problems = []
    worst: dict[str, float] = {}
    for name, want in sorted(expected.items()):
        got = outputs.get(name)
        if got is None:
            problems.append(f"{name}: in the reference file but not in the response")
            continue
        if got.shape != want.shape:
            problems.append(f"{name}: shape {list(got.shape)}, reference {list(want.shape)}")
            continue
        if not np.issubdtype(want.dtype, np.number):
            if not np.array_equal(got, want):
                problems.append(f"{name}: differs from the reference")
            continue
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        worst[name] = float(np.max(diff)) if diff.size else 0.0
        close = np.isclose(got, want, atol=ref.atol, rtol=ref.rtol)
        if not np.all(close):
            problems.append(
                f"{name}: {int(close.size - close.sum())} of {close.size} values outside atol={ref.atol:g} "
                f"rtol={ref.rtol:g} (max abs diff {worst[name]:.3g})"
            )
    data: dict[str, object] = {"max_abs_diff": worst, "atol": ref.atol, "rtol": ref.rtol}
    if problems:
        return "fail", "; ".join(problems), data
    diff_text = ", ".join(f"{k} max abs diff {v:.3g}" for k, v in worst.items())
    return "pass", f"matches the reference within atol={ref.atol:g} rtol={ref.rtol:g} ({diff_text})", data
