"""The building blocks every pipeline shares: a ``sonic`` step, volumes, retries, pod hardening.

Each step is a container template running one ``sonic`` subcommand in the pipeline image, so a
step in Argo is exactly the command a person runs locally. What differs between steps is said
explicitly where the step is built: its size, whether it talks to the network (and so is retried),
which Secrets it sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hera.workflows import Container, Parameter, RetryStrategy
from hera.workflows import models as m

from pipelines.workflows.settings import PipelineSettings, SecretRef

WORKSPACE = "/work"
SRC = f"{WORKSPACE}/src"  # the repository checkout every later step works in
OUTPUTS = "/tmp/outputs"  # files Argo turns into output parameters
SECRETS = "/var/run/secrets/sonic"
SONIC = "sonic"

# Executor (wait/init containers) identity: Argo Workflows v3.4+ reports step results through
# workflowtaskresults, which needs a token; the steps' own containers get none unless they must.
EXECUTOR_SA = "sonic-workflow-executor"

MANAGED_LABELS = {"app.kubernetes.io/part-of": "sonic", "app.kubernetes.io/managed-by": "sonic-gitops"}


@dataclass(frozen=True)
class Size:
    """Requests and limits of one step's container."""

    cpu: str
    memory: str
    cpu_limit: str
    memory_limit: str

    def resources(self) -> m.ResourceRequirements:
        return m.ResourceRequirements(
            requests={"cpu": m.Quantity(self.cpu), "memory": m.Quantity(self.memory)},
            limits={"cpu": m.Quantity(self.cpu_limit), "memory": m.Quantity(self.memory_limit)},
        )


SMALL = Size("100m", "128Mi", "500m", "512Mi")  # API calls, git
MEDIUM = Size("250m", "512Mi", "1", "1Gi")  # validation, rendering, checks (numpy, gRPC)
LARGE = Size("1", "2Gi", "2", "8Gi")  # model builds: hashing and copying large artifacts


def network_retry(limit: int = 4) -> RetryStrategy:
    """Retry a network step with exponential backoff, but only when trying again can help.

    ``sonic`` exits 2 for environment errors (unreachable host, 5xx, rate limit, lost push race)
    and 1 when the answer was a real "no" (bad request, failed check); pod errors (eviction,
    node loss) are ``Error`` nodes. So: retry on Error or exit code 2, never on exit code 1.
    """
    return RetryStrategy(
        limit=limit,
        retry_policy="Always",
        expression='lastRetry.status == "Error" || lastRetry.exitCode == "2"',
        backoff=m.Backoff(duration="10s", factor=m.IntOrString(2), max_duration="5m"),
    )


def pod_error_retry() -> RetryStrategy:
    """For long, local steps: only a lost pod (eviction, node failure) is worth another try."""
    return RetryStrategy(
        limit=2, retry_policy="OnError", backoff=m.Backoff(duration="30s", factor=m.IntOrString(2))
    )


def secret_volume(name: str, ref: SecretRef, optional: bool = False) -> m.Volume:
    """A Secret as files, readable by the step's group only (values never pass through env or args)."""
    return m.Volume(
        name=name,
        secret=m.SecretVolumeSource(
            secret_name=ref.name,
            items=[m.KeyToPath(key=ref.key, path=ref.key)],
            default_mode=0o440,
            optional=optional or None,
        ),
    )


def secret_file(volume: str, ref: SecretRef) -> str:
    """Where a step reads the Secret mounted by :func:`secret_mount`."""
    return f"{SECRETS}/{volume}/{ref.key}"


def secret_mount(volume: str) -> m.VolumeMount:
    return m.VolumeMount(name=volume, mount_path=f"{SECRETS}/{volume}", read_only=True)


TMP_VOLUME = m.Volume(name="tmp", empty_dir=m.EmptyDirVolumeSource(size_limit=m.Quantity("1Gi")))
TMP_MOUNT = m.VolumeMount(name="tmp", mount_path="/tmp")
WORKSPACE_MOUNT = m.VolumeMount(name="workspace", mount_path=WORKSPACE)


def workspace_claim(size: str = "2Gi") -> m.PersistentVolumeClaim:
    """A volume per workflow run, shared by its steps (which run one after another)."""
    return m.PersistentVolumeClaim(
        metadata=m.ObjectMeta(name="workspace"),
        spec=m.PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            resources=m.VolumeResourceRequirements(requests={"storage": m.Quantity(size)}),
        ),
    )


def container_security() -> m.SecurityContext:
    return m.SecurityContext(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        capabilities=m.Capabilities(drop=["ALL"]),
    )


def pod_security(settings: PipelineSettings) -> m.PodSecurityContext:
    uid = settings.run_as_user
    return m.PodSecurityContext(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=uid,
        fs_group=uid,  # the workspace volume and Secret files become group-accessible to the step
        seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
    )


def workflow_spec_defaults(settings: PipelineSettings, service_account: str, deadline: int) -> dict[str, Any]:
    """Keyword arguments shared by every WorkflowTemplate / CronWorkflow this project renders.

    Successful pods are deleted at once (their logs are in the workflow archive when the site
    enables it); failed ones stay for debugging until the workflow's TTL removes everything.
    """
    return {
        "namespace": settings.namespace,
        "labels": dict(MANAGED_LABELS),
        "service_account_name": service_account,
        "executor": m.ExecutorConfig(service_account_name=EXECUTOR_SA),
        "active_deadline_seconds": deadline,
        "pod_gc": m.PodGC(strategy="OnPodSuccess"),
        "ttl_strategy": m.TTLStrategy(
            seconds_after_success=24 * 3600,
            seconds_after_failure=7 * 24 * 3600,
            seconds_after_completion=7 * 24 * 3600,
        ),
        "security_context": pod_security(settings),
    }


def sonic_step(
    name: str,
    args: Sequence[str],
    settings: PipelineSettings,
    *,
    size: Size = SMALL,
    network: bool = False,
    deadline: int = 600,
    mounts: Sequence[m.VolumeMount] = (WORKSPACE_MOUNT,),
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
    workdir: str | None = SRC,
    retry: RetryStrategy | None = None,
    env: Sequence[tuple[str, str]] = (),
    artifacts: Sequence[m.Artifact] = (),
) -> Container:
    """A container template running ``sonic ARGS``.

    ``outputs`` name files the step writes under ``/tmp/outputs/`` that become output parameters
    of the same name; ``inputs`` are template input parameters (``{{inputs.parameters.X}}``);
    ``artifacts`` are output artifacts (stored in the site's artifact repository).
    """
    params: list[Parameter | m.Artifact] = [
        Parameter(name=o, value_from=m.ValueFrom(path=f"{OUTPUTS}/{o}")) for o in outputs
    ]
    return Container(
        name=name,
        image=settings.image,
        command=[SONIC],
        args=list(args),
        working_dir=workdir,
        resources=size.resources(),
        security_context=container_security(),
        volume_mounts=[TMP_MOUNT, *mounts],
        env=[m.EnvVar(name="HOME", value="/tmp"), *(m.EnvVar(name=k, value=v) for k, v in env)],
        inputs=[Parameter(name=i) for i in inputs] or None,
        outputs=[*params, *artifacts] or None,
        retry_strategy=retry if retry is not None else (network_retry() if network else None),
        active_deadline_seconds=deadline,
    )


def wf_param(name: str) -> str:
    return f"{{{{workflow.parameters.{name}}}}}"


def task_output(task: str, name: str) -> str:
    return f"{{{{tasks.{task}.outputs.parameters.{name}}}}}"


def flags(**options: str | bool | Sequence[str]) -> list[str]:
    """Command-line options from keywords, in order: ``target_url="x"`` -> ``--target-url x``.

    ``True`` gives a bare flag, a list repeats the option, ``False`` leaves it out.
    """
    args: list[str] = []
    for key, value in options.items():
        option = "--" + key.replace("_", "-")
        if value is True:
            args.append(option)
        elif isinstance(value, str):
            args += [option, value]
        elif value is not False:
            for item in value:
                args += [option, item]
    return args


def argv(*words: str, **options: str | bool | Sequence[str]) -> list[str]:
    """Arguments of a ``sonic`` command: positional words, then :func:`flags`."""
    return [*words, *flags(**options)]
