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

from hera.workflows import Container, ContainerNode, ContainerSet, Parameter, RetryStrategy
from hera.workflows import models as m

from pipelines.config import names
from pipelines.config.footprint import MODEL_BUILD
from pipelines.config.model import Resources
from pipelines.workflows.settings import PipelineSettings, SecretRef

WORKSPACE = "/work"
SRC = f"{WORKSPACE}/src"  # the repository checkout every later step works in
OUTPUTS = "/tmp/outputs"  # files Argo turns into output parameters
SECRETS = "/var/run/secrets/sonic"
SONIC = "sonic"

# Executor (wait/init containers) identity: Argo Workflows v3.4+ reports step results through
# workflowtaskresults, which needs a token; the steps' own containers get none unless they must.
EXECUTOR_SA = "sonic-workflow-executor"

MANAGED_LABELS = names.managed_labels()


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


def _size(r: Resources) -> Size:
    assert r.cpu and r.memory and r.cpu_limit and r.memory_limit
    return Size(r.cpu, r.memory, r.cpu_limit, r.memory_limit)


# Model builds: hashing and copying large artifacts (counted against the namespace quota there).
LARGE = _size(MODEL_BUILD)


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


@dataclass(frozen=True)
class MountedSecret:
    """One key of a Secret as a file, readable by the step's group only.

    Values never pass through env or args: the pod lists :meth:`volume`, a step that needs the
    value mounts :meth:`mount` and is told :attr:`file`. ``optional`` Secrets may be absent
    (features a site may not use).
    """

    volume_name: str
    ref: SecretRef
    optional: bool = False

    @property
    def file(self) -> str:
        """Where a step that mounts the Secret reads it."""
        return f"{SECRETS}/{self.volume_name}/{self.ref.key}"

    def mount(self) -> m.VolumeMount:
        return m.VolumeMount(
            name=self.volume_name, mount_path=f"{SECRETS}/{self.volume_name}", read_only=True
        )

    def volume(self) -> m.Volume:
        return m.Volume(
            name=self.volume_name,
            secret=m.SecretVolumeSource(
                secret_name=self.ref.name,
                items=[m.KeyToPath(key=self.ref.key, path=self.ref.key)],
                default_mode=0o440,
                optional=self.optional or None,
            ),
        )


@dataclass(frozen=True)
class MountedSecretDir:
    """Every key of a Secret as files in one directory, readable by the step's group only.

    For Secrets whose keys a command reads together (OAuth2 client credentials, a kubeconfig
    Secret) and whose optional keys may be absent.
    """

    volume_name: str
    secret_name: str
    optional: bool = False

    @property
    def path(self) -> str:
        """The directory a step that mounts the Secret reads."""
        return f"{SECRETS}/{self.volume_name}"

    def mount(self) -> m.VolumeMount:
        return m.VolumeMount(name=self.volume_name, mount_path=self.path, read_only=True)

    def volume(self) -> m.Volume:
        return m.Volume(
            name=self.volume_name,
            secret=m.SecretVolumeSource(
                secret_name=self.secret_name, default_mode=0o440, optional=self.optional or None
            ),
        )


def github_token(settings: PipelineSettings) -> MountedSecret:
    """Reads the repository, sets commit statuses, writes pull-request comments.

    Only for steps in the pipelines namespace: a pod in an experiment namespace runs what a pull
    request wrote, and could hand this token to anyone (see :func:`github_read_token`).
    """
    return MountedSecret("github-token", settings.github_token)


def github_read_token(settings: PipelineSettings) -> MountedSecret:
    """Only reads the repository: the token for steps in experiment namespaces (issue 11)."""
    return MountedSecret("github-read-token", settings.github_read_token)


def push_token(settings: PipelineSettings) -> MountedSecret:
    """Pushes to the GitOps branch."""
    return MountedSecret("push-token", settings.push_token)


def check_client(settings: PipelineSettings, *, optional: bool = False) -> MountedSecretDir:
    """OAuth2 client credentials: a fresh JWT for deployments behind JWT auth, at check time."""
    return MountedSecretDir("check-client", settings.check_client, optional)


def prometheus_token(settings: PipelineSettings, *, optional: bool = False) -> MountedSecret:
    """Queries a site's Prometheus that wants a bearer token."""
    return MountedSecret("prometheus-token", settings.prometheus_token, optional)


TMP_VOLUME = m.Volume(name="tmp", empty_dir=m.EmptyDirVolumeSource(size_limit=m.Quantity("1Gi")))
TMP_MOUNT = m.VolumeMount(name="tmp", mount_path="/tmp")
WORKSPACE_MOUNT = m.VolumeMount(name="workspace", mount_path=WORKSPACE)
# A step's own workspace (per pod), for steps that run in parallel: see checked_out_step.
OWN_WORKSPACE = m.Volume(name="own-workspace", empty_dir=m.EmptyDirVolumeSource(size_limit=m.Quantity("2Gi")))


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


def workflow_spec(
    settings: PipelineSettings,
    service_account: str,
    deadline: int,
    *,
    secrets: Sequence[MountedSecret | MountedSecretDir] = (),
    volumes: Sequence[m.Volume] = (),
    workspace: str | None = "2Gi",
    mutex: str | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments shared by every WorkflowTemplate / CronWorkflow this project renders.

    Each run gets its own workspace volume (``workspace`` big; None: no shared volume, every
    step that needs files brings its own, see :func:`checked_out_step`) and a ``/tmp``, then the
    volumes of ``secrets`` and ``volumes``. The workspace is ReadWriteOnce: only steps that run
    one after another may share it (parallel pods on other nodes could not attach it). No step gets a Kubernetes token unless it asks for one. A
    ``mutex`` lets one run holding that name proceed at a time. Successful pods are deleted at
    once (their logs are in the workflow archive when the site enables it); failed ones stay for
    debugging until the workflow's TTL removes everything.
    """
    return {
        "namespace": namespace or settings.namespace,
        "labels": dict(MANAGED_LABELS),
        "service_account_name": service_account,
        "executor": m.ExecutorConfig(service_account_name=EXECUTOR_SA),
        "automount_service_account_token": False,
        "active_deadline_seconds": deadline,
        "synchronization": m.Synchronization(mutexes=[m.Mutex(name=mutex)]) if mutex else None,
        "volume_claim_templates": [workspace_claim(workspace)] if workspace else None,
        "volume_claim_gc": m.VolumeClaimGC(strategy="OnWorkflowCompletion") if workspace else None,
        "volumes": [TMP_VOLUME, *(s.volume() for s in secrets), *volumes],
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


def github_step(
    name: str,
    args: Sequence[str],
    settings: PipelineSettings,
    token: MountedSecret,
    *,
    workspace: bool = False,
    outputs: Sequence[str] = (),
) -> Container:
    """A step that talks to GitHub with ``token``.

    Without ``workspace`` it only calls the API: no volume but the token, no working directory.
    With it, it works in the workspace (a checkout, or reading one).
    """
    return sonic_step(
        name,
        args,
        settings,
        network=True,
        mounts=[WORKSPACE_MOUNT, token.mount()] if workspace else [token.mount()],
        workdir=WORKSPACE if workspace else None,
        outputs=outputs,
    )


def checkout_step(
    settings: PipelineSettings,
    token: MountedSecret,
    *,
    repository: str,
    ref: str,
    pr: str | None = None,
    base_ref: str | None = None,
    on_branch: str | None = None,
    relevant: Sequence[str] = (),
    outputs: Sequence[str] = (),
) -> Container:
    """The ``checkout`` step every pipeline starts with: ``repository`` at ``ref`` into ``SRC``.

    ``pr`` fetches that pull request's head ref (forks work); ``base_ref`` and ``relevant`` let
    the step say what the pull request touches; ``on_branch`` refuses a commit that is not on
    that branch; ``outputs`` name what it reports (see ``sonic github checkout --help``).
    """
    args = argv(
        "github",
        "checkout",
        repository=repository,
        server=settings.git_server,
        pr=pr or False,
        ref=ref,
        base_ref=base_ref or False,
        relevant=relevant,
        on_branch=on_branch or False,
        dest=SRC,
        outputs=OUTPUTS if outputs else False,
        token_file=token.file,
    )
    return github_step("checkout", args, settings, token, workspace=True, outputs=outputs)


def checked_out_step(
    name: str,
    args: Sequence[str],
    settings: PipelineSettings,
    token: MountedSecret,
    *,
    repository: str,
    ref: str,
    pr: str | None = None,
    size: Size = SMALL,
    network: bool = False,
    deadline: int = 600,
    secrets: Sequence[MountedSecret | MountedSecretDir] = (),
    inputs: Sequence[str] = (),
) -> ContainerSet:
    """A step with a checkout of its own: ``sonic github checkout`` then ``sonic ARGS``, in one pod.

    Steps that run in parallel cannot share the workflow's ReadWriteOnce workspace (a second
    pod on another node fails with Multi-Attach). An Argo container set runs both commands in
    one pod sharing an emptyDir, "cheap and fast empty-dir volumes instead of persistent volume
    claims" (argo-workflows docs/container-set-template.md). The checkout retries what is worth
    retrying itself; the step's own command runs as ``main`` (whose exit code and outputs count)
    in ``SRC``, with ``secrets`` that the checkout never sees.

    Every volume a container mounts is declared on the template itself: for a container set the
    controller copies workflow-level volumes only for the set-wide ``volumeMounts``, never for
    a container's own (argo-workflows workflow/controller/workflowpod.go addVolumeReferences
    and Template.GetVolumeMounts); a pod mounting anything else is refused by the API server.
    """
    checkout = argv(
        "github",
        "checkout",
        repository=repository,
        server=settings.git_server,
        pr=pr or False,
        ref=ref,
        dest=SRC,
        token_file=token.file,
        attempts="4",
    )
    env = [m.EnvVar(name="HOME", value="/tmp")]
    own = m.VolumeMount(name=OWN_WORKSPACE.name, mount_path=WORKSPACE)
    return ContainerSet(
        name=name,
        volumes=[TMP_VOLUME, OWN_WORKSPACE, token.volume(), *(s.volume() for s in secrets)],
        containers=[
            ContainerNode(
                name="checkout",
                image=settings.image,
                command=[SONIC],
                args=checkout,
                working_dir=WORKSPACE,
                resources=SMALL.resources(),
                security_context=container_security(),
                volume_mounts=[TMP_MOUNT, own, token.mount()],
                env=env,
            ),
            ContainerNode(
                name="main",
                image=settings.image,
                command=[SONIC],
                args=list(args),
                working_dir=SRC,
                resources=size.resources(),
                security_context=container_security(),
                volume_mounts=[TMP_MOUNT, own, *(s.mount() for s in secrets)],
                env=env,
                dependencies=["checkout"],
            ),
        ],
        inputs=[Parameter(name=i) for i in inputs] or None,
        retry_strategy=network_retry() if network else None,
        active_deadline_seconds=deadline,
    )


def repository_parameter(settings: PipelineSettings) -> Parameter:
    """The ``repository`` argument of a workflow (defaults to the configuration repository)."""
    return Parameter(name="repository", description="OWNER/NAME of the repository", value=settings.repository)


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
