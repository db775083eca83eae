"""Authentication: when the deployment declares JWT, anonymous requests must be refused with
UNAUTHENTICATED, and a request carrying the given token must pass."""

from __future__ import annotations

from pipelines.checks.connection import code_name, describe
from pipelines.checks.context import Context, skipped, timed
from pipelines.checks.result import CheckResult, Status
from pipelines.checks.tensors import ModelPlan, TensorError, infer_inputs, synthetic_inputs
from pipelines.config.model import Jwt, Placement

Outcome = tuple[Status, str, dict[str, object]]


def declared_jwt(p: Placement) -> Jwt | None:
    return p.envoy.auth.jwt if p.envoy.auth else None


def anonymous_rejected(ctx: Context, p: Placement, plan: ModelPlan | None) -> CheckResult:
    """An inference without a token (ServerLive when no model can be probed) must get UNAUTHENTICATED."""
    jwt = declared_jwt(p)
    if jwt is None:
        return skipped("auth.anonymous", "", "the deployment declares no JWT authentication")

    def body() -> Outcome:
        what = "ServerLive"
        try:
            if plan is not None:
                try:
                    inputs = infer_inputs(plan, synthetic_inputs(plan))
                    what = f"ModelInfer({plan.name})"
                except TensorError:
                    inputs = None
                if inputs is not None:
                    ctx.client.infer(plan.name, inputs, client_timeout=ctx.timeout())
                else:
                    ctx.client.is_server_live(client_timeout=ctx.timeout())
            else:
                ctx.client.is_server_live(client_timeout=ctx.timeout())
        except Exception as exc:
            if code_name(exc) == "UNAUTHENTICATED":
                return "pass", f"{what} without a token refused: {describe(exc)}", {}
            return "fail", f"{what} without a token: expected UNAUTHENTICATED, got {describe(exc)}", {}
        return (
            "fail",
            f"{what} WITHOUT a token was ACCEPTED: the endpoint does not enforce the declared JWT "
            f"authentication (provider {jwt.provider}, issuer {jwt.issuer})",
            {},
        )

    return timed("auth.anonymous", "", body)


def token_accepted(ctx: Context, p: Placement) -> CheckResult:
    """With the token, a request passes; without one, nothing else can be checked."""
    jwt = declared_jwt(p)
    if jwt is None:
        return skipped("auth.token", "", "the deployment declares no JWT authentication")

    def body() -> Outcome:
        if not ctx.endpoint.token:
            return (
                "fail",
                f"the deployment requires a JWT (provider {jwt.provider}, issuer {jwt.issuer}, audiences "
                f"{list(jwt.audiences)}) and no token was given (--token-file): every request is refused "
                "with UNAUTHENTICATED, so the checks that need the server are skipped",
                {},
            )
        try:
            ctx.client.is_server_live(headers=ctx.endpoint.headers(), client_timeout=ctx.timeout())
        except Exception as exc:
            # Envoy answers 401 (UNAUTHENTICATED) for a bad token, 403 (PERMISSION_DENIED) for a
            # valid token with the wrong audience.
            if code_name(exc) in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
                return "fail", f"the token was refused: {describe(exc)}", {}
            return "fail", describe(exc), {}
        return "pass", "a request with the token passes", {}

    return timed("auth.token", "", body)
