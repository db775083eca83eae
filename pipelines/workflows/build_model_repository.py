"""WorkflowTemplate ``build-model-repository``: build a deployment's snapshot where Triton reads it.

::

    checkout (revision) ─► sonic build-models EXPERIMENT/DEPLOYMENT --dest <claim>/<experiment>/<deployment>
                               └─► output artifact ``lock``: the repository.lock.json it wrote

The snapshot must land on the site's snapshots claim (``storage.snapshots.claim``), which Triton
mounts in the deployment's namespace; a PersistentVolumeClaim is namespaced, so the template is
rendered into every namespace that runs a deployment at the site (one file per site). Sites
without a snapshots claim get none. The lock artifact needs the namespace's artifact repository
(docs/workflows.md); it is optional because deployments served entirely from CVMFS, PVC, NFS or
a baked image have nothing to lock.
"""

from __future__ import annotations

from typing import Any

from hera.workflows import DAG, Parameter, Task, WorkflowTemplate
from hera.workflows import models as m

from pipelines.config import Site, Tree, layout, names
from pipelines.config.model import deployment_ref
from pipelines.workflows import rbac
from pipelines.workflows.settings import PipelineSettings
from pipelines.workflows.steps import (
    LARGE,
    SRC,
    WORKSPACE_MOUNT,
    argv,
    checkout_step,
    github_read_token,
    repository_parameter,
    sonic_step,
    wf_param,
    workflow_spec,
)

NAME = "build-model-repository"
SNAPSHOTS = "/snapshots"


def template(settings: PipelineSettings, site: Site, namespace: str) -> WorkflowTemplate:
    """The template in one namespace of ``site``, writing to the site's snapshots claim."""
    assert site.storage.snapshots is not None
    # The experiment namespace runs code a pull request may have written: a read-only token only.
    token = github_read_token(settings)
    experiment, deployment = wf_param("experiment"), wf_param("deployment")
    # The directory the renderers mount into Triton (render.names.snapshot_subpath).
    dest = f"{SNAPSHOTS}/{names.snapshot_dir(experiment, deployment)}"
    snapshots = m.Volume(
        name="snapshots",
        persistent_volume_claim=m.PersistentVolumeClaimVolumeSource(claim_name=site.storage.snapshots.claim),
    )

    checkout = checkout_step(settings, token, repository=wf_param("repository"), ref=wf_param("revision"))
    lock = m.Artifact(
        name="lock",
        path=f"{SRC}/{layout.lock_file(experiment, deployment)}",
        archive=m.ArchiveStrategy(none=m.NoneStrategy()),
        optional=True,
    )
    build = sonic_step(
        "build-models",
        argv("build-models", deployment_ref(experiment, deployment), dest=dest),
        settings,
        # Downloads resume and snapshots publish atomically: retrying a build is safe.
        size=LARGE,
        network=True,
        deadline=2 * 3600,
        mounts=[WORKSPACE_MOUNT, m.VolumeMount(name="snapshots", mount_path=SNAPSHOTS)],
        artifacts=[lock],
    )

    with (
        WorkflowTemplate(
            name=NAME,
            annotations={
                "workflows.argoproj.io/description": f"Build a deployment's model snapshot into {site.storage.snapshots.claim}.",
                names.SITE_LABEL: site.name,
            },
            entrypoint="main",
            arguments=[
                Parameter(name="experiment", description="experiment of the deployment"),
                Parameter(name="deployment", description="deployment name"),
                repository_parameter(settings),
                Parameter(
                    name="revision", description="commit or branch to build from", value=settings.base_branch
                ),
            ],
            **workflow_spec(
                settings,
                rbac.BUILD_MODELS_SA,
                deadline=3 * 3600,
                secrets=[token],
                volumes=[snapshots],
                # Two builds of one deployment would race for the same snapshot directory.
                mutex=f"build-{experiment}-{deployment}",
                namespace=namespace,
            ),
        ) as wt,
        DAG(name="main"),
    ):
        Task(name="checkout", template=checkout)
        Task(name="build-models", template=build, depends="checkout.Succeeded")
    return wt


def namespaces(tree: Tree, site: str) -> list[str]:
    """Namespaces that run a deployment at ``site`` (where snapshots are mounted)."""
    return sorted({p.namespace for p in tree.placements_at(site)})


def objects(settings: PipelineSettings, tree: Tree, site: Site) -> list[dict[str, Any]]:
    """For each namespace of the site: the template, its ServiceAccount and the executor identity."""
    if site.storage.snapshots is None:
        return []
    out: list[dict[str, Any]] = []
    for ns in namespaces(tree, site.name):
        out += [
            rbac.service_account(rbac.BUILD_MODELS_SA, ns, token=False),
            *rbac.executor(ns),
            template(settings, site, ns).to_dict(),
        ]
    return out
