"""What the Argo Workflows controller of a cluster running these pipelines must be configured with.

The controller adds its own containers to every workflow pod (``init`` and ``wait``, the
executor). Their security context comes only from the controller's ConfigMap
(``workflow-controller-configmap``, key ``executor``; argo-workflows
workflow/controller/workflowpod.go newExecContainer), not from the workflow. In a namespace that
enforces the Pod Security Standard ``restricted`` (pipelines.config.names.POD_SECURITY_LEVEL, which
docs/gitops.md asks admins to label) the API server refuses every workflow pod unless the
executor containers also drop all capabilities, forbid privilege escalation and run as non-root
with the RuntimeDefault seccomp profile: the control-plane tier found exactly that refusal.
"""

from __future__ import annotations

from typing import Any

import yaml

from pipelines.config.footprint import WORKFLOW_EXECUTOR

# The `executor` entry of workflow-controller-configmap (docs/workflows.md shows it verbatim).
EXECUTOR: dict[str, Any] = {
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": 8737,  # the argoexec image's non-root user
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    # Explicit, so the executor fits the experiment namespaces' ResourceQuota (which refuses a
    # container without requests and limits) and is counted there (pipelines.config.footprint).
    "resources": {
        "requests": {"cpu": WORKFLOW_EXECUTOR.cpu, "memory": WORKFLOW_EXECUTOR.memory},
        "limits": {"cpu": WORKFLOW_EXECUTOR.cpu_limit, "memory": WORKFLOW_EXECUTOR.memory_limit},
    },
}


def configmap_data() -> dict[str, str]:
    """The ConfigMap keys to merge into ``workflow-controller-configmap``."""
    return {"executor": yaml.safe_dump(EXECUTOR, sort_keys=False)}
