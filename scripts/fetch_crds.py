#!/usr/bin/env python3
"""Fetch the upstream CRDs the tests validate against into DEST (default ../shared/crds).

The tests read ``../shared/crds`` beside the clone (tests/conftest.py: SHARED). On a machine
that lacks it (a CI runner), this downloads each file from its upstream repository at the
pinned release tag and checks it byte for byte: its git blob id must equal the one recorded
here (what ``git hash-object`` prints), so a moved tag or a changed file fails loudly.

    python3 scripts/fetch_crds.py ../shared/crds

Standard library only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import hashlib
import sys
import urllib.request
from pathlib import Path

# (file under DEST, upstream repository, path in it, tag, git blob id)
FILES = (
    ("keda.sh/scaledobjects.yaml", "kedacore/keda", "config/crd/bases/keda.sh_scaledobjects.yaml", "v2.20.2", "f0302424ebce7f1903433910ae7a978c73ae85f3"),
    ("keda.sh/scaledjobs.yaml", "kedacore/keda", "config/crd/bases/keda.sh_scaledjobs.yaml", "v2.20.2", "0723539d8a41125461ecbb31dbea67a0122ae612"),
    ("keda.sh/triggerauthentications.yaml", "kedacore/keda", "config/crd/bases/keda.sh_triggerauthentications.yaml", "v2.20.2", "e345ac8f39d464ad6fb41d202dfd3de5e7b36911"),
    ("keda.sh/clustertriggerauthentications.yaml", "kedacore/keda", "config/crd/bases/keda.sh_clustertriggerauthentications.yaml", "v2.20.2", "e9ed601671ac4dca6332db7c969b244a45beaa5d"),
    ("argoproj.io/applications.yaml", "argoproj/argo-cd", "manifests/crds/application-crd.yaml", "v3.5.1", "d654fa27c6baa8907e7c51f060d82cd1247925d6"),
    ("argoproj.io/applicationsets.yaml", "argoproj/argo-cd", "manifests/crds/applicationset-crd.yaml", "v3.5.1", "9fda8266b0500e96b8b55b1ab5fa25ae90309b43"),
    ("argoproj.io/appprojects.yaml", "argoproj/argo-cd", "manifests/crds/appproject-crd.yaml", "v3.5.1", "1cea1a4d5c90608643d513a30a51b3471a425755"),
    ("monitoring.coreos.com/servicemonitors.yaml", "prometheus-operator/prometheus-operator", "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml", "v0.93.0", "f5736255990a0e152851fadb55f84d6fd0f91d87"),
    ("monitoring.coreos.com/podmonitors.yaml", "prometheus-operator/prometheus-operator", "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml", "v0.93.0", "5c1bde3d4a5f3131fd6c148ab933193b867173f2"),
    ("monitoring.coreos.com/prometheusrules.yaml", "prometheus-operator/prometheus-operator", "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml", "v0.93.0", "b423c3225b18489ca7bbc5091f38f7003c4bf3fc"),
    ("argoproj.io/workflows.yaml", "argoproj/argo-workflows", "manifests/base/crds/full/argoproj.io_workflows.yaml", "v4.1.2", "8b682fc521df85916c7454aad05ab0793865a097"),
    ("argoproj.io/workflowtemplates.yaml", "argoproj/argo-workflows", "manifests/base/crds/full/argoproj.io_workflowtemplates.yaml", "v4.1.2", "71a4af1a6c9afd86e1ee139d8006389776b17d21"),
    ("argoproj.io/cronworkflows.yaml", "argoproj/argo-workflows", "manifests/base/crds/full/argoproj.io_cronworkflows.yaml", "v4.1.2", "d3db2b8371a3e9350ab162a2464f7657b0352dc3"),
    ("argoproj.io/sensors.yaml", "argoproj/argo-events", "manifests/base/crds/argoproj.io_sensors.yaml", "v1.9.11", "473fe87e5073c97bdca7b860063edc1e737a818a"),
    ("argoproj.io/eventsources.yaml", "argoproj/argo-events", "manifests/base/crds/argoproj.io_eventsources.yaml", "v1.9.11", "320aec42c17ef0c4eb583601725938a2353e2ba1"),
    ("_supplementary/argo-events/jsonschema.json", "argoproj/argo-events", "api/jsonschema/schema.json", "v1.9.11", "b291df5488095a6415ab37362fd9034abb0d5031"),
)  # fmt: skip


def blob_id(data: bytes) -> str:
    """What `git hash-object` prints for a file with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def main(dest: Path) -> int:
    for name, repo, path, tag, blob in FILES:
        target = dest / name
        if target.is_file() and blob_id(target.read_bytes()) == blob:
            continue
        url = f"https://raw.githubusercontent.com/{repo}/{tag}/{path}"
        with urllib.request.urlopen(url, timeout=60) as answer:
            data = answer.read()
        if blob_id(data) != blob:
            print(f"fetch_crds: {url}: blob {blob_id(data)}, expected {blob}", file=sys.stderr)
            return 1
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        print(f"fetched {name} ({repo}@{tag})")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "crds"))
