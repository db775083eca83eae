"""Server and model readiness, and whether each served model matches its declaration."""

from __future__ import annotations

from pipelines.checks import model_config
from pipelines.checks.connection import describe
from pipelines.checks.context import Context, timed
from pipelines.checks.result import CheckResult, Status
from pipelines.config.model import Model

Outcome = tuple[Status, str, dict[str, object]]


def live(ctx: Context) -> CheckResult:
    """The server answers ServerLive (through Envoy: at least one upstream answers)."""

    def body() -> Outcome:
        try:
            ok = ctx.client.is_server_live(headers=ctx.endpoint.headers(), client_timeout=ctx.timeout())
        except Exception as exc:
            return "fail", f"no answer from {ctx.endpoint.url}: {describe(exc)}", {}
        return ("pass", "server is live", {}) if ok else ("fail", "server answered: not live", {})

    return timed("server.live", "", body)


def ready(ctx: Context) -> CheckResult:
    """The server reports ready (every model it was told to load is loaded)."""

    def body() -> Outcome:
        try:
            ok = ctx.client.is_server_ready(headers=ctx.endpoint.headers(), client_timeout=ctx.timeout())
        except Exception as exc:
            return "fail", describe(exc), {}
        return ("pass", "server is ready", {}) if ok else ("fail", "server answered: not ready", {})

    return timed("server.ready", "", body)


def model_ready(ctx: Context, model: Model) -> CheckResult:
    """Every declared version of ``model`` is loaded and ready."""

    def body() -> Outcome:
        not_ready = []
        for version in model.versions:
            try:
                ok = ctx.client.is_model_ready(
                    model.name, str(version), headers=ctx.endpoint.headers(), client_timeout=ctx.timeout()
                )
            except Exception as exc:
                return "fail", f"version {version}: {describe(exc)}", {}
            if not ok:
                not_ready.append(version)
        if not_ready:
            data: dict[str, object] = {"not_ready_versions": not_ready}
            try:
                meta = ctx.client.get_model_metadata(
                    model.name, headers=ctx.endpoint.headers(), client_timeout=ctx.timeout()
                )
            except Exception as exc:
                why = describe(exc)
                return (
                    "fail",
                    f"the server does not know the model ({why}): it is missing from the repository "
                    "or failed to load (see the Triton log)",
                    data,
                )
            served = list(meta.versions)
            return "fail", f"declared version(s) {not_ready} not ready (served versions: {served})", data
        return "pass", f"version(s) {list(model.versions)} ready", {}

    return timed("model.ready", model.name, body)


def model_matches(ctx: Context, model: Model) -> CheckResult:
    """Served metadata and configuration equal the declaration; each differing field is named."""

    def body() -> Outcome:
        try:
            headers = ctx.endpoint.headers()
            metadata = ctx.client.get_model_metadata(
                model.name, headers=headers, client_timeout=ctx.timeout()
            )
            config = ctx.client.get_model_config(model.name, headers=headers, client_timeout=ctx.timeout())
        except Exception as exc:
            return "fail", describe(exc), {}
        diffs = model_config.differences(model, metadata, config.config)
        if diffs:
            return "fail", "; ".join(diffs), {"differences": diffs}
        return "pass", "metadata and config match the declaration", {}

    return timed("model.config", model.name, body)
