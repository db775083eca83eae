"""A frozen site for the doctor's unit tests (not the live gitops/sites/, which site admins change)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pipelines.config import schema
from pipelines.config.model import Site

SITE: dict[str, Any] = {
    "name": "testsite",
    "argocd": {"server": "https://k8s.example.org:6443"},
    "kubernetes": {"minVersion": "1.29", "maxVersion": "1.31"},
    "gpuClasses": {
        "A100": {
            "nodeSelector": {"pool": "gpu"},
            "products": ["NVIDIA-A100-80GB-PCIe", "NVIDIA-A100-SXM4-80GB"],
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "sonic", "effect": "NoSchedule"}
            ],
        },
    },
    "storage": {
        "cvmfs": {"storageClass": "cvmfs"},
        "pvcs": ["team-models"],
        "snapshots": {"claim": "snapshots"},
    },
    "ingress": {
        "className": "nginx",
        "domain": "example.org",
        "namespace": "ingress-nginx",
        "publishesStatus": True,
        "tlsSecret": "wildcard-tls",
    },
    "prometheus": {
        "url": "https://prometheus.example.org",
        "namespace": "monitoring",
        "auth": {"secretRef": {"name": "prometheus-token", "key": "token"}},
    },
    "experiments": {
        "cms": {"namespaces": ["cms", "cms-dev"], "gpuQuota": 4},
        "atlas": {"namespaces": ["atlas"]},
    },
}


def make_site(**changes: Any) -> Site:
    """The frozen site with top-level ``changes`` (None removes a key), defaults applied as the loader does."""
    data = copy.deepcopy(SITE)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    data = schema.apply_defaults(data, "site")
    return Site.model_validate({**data, "source": Path("gitops/sites/testsite.yaml")})
