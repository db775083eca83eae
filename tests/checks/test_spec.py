"""The check spec, and the PostSync Job's command run with nothing but its ConfigMap.

The Job runs in the pipeline image, which has no configuration tree. These tests run the
command exactly as rendered in the committed ``gitops/rendered`` files, in an empty working
directory, with only the files of its mounted ConfigMap written out (``binaryData`` decoded):
only the endpoint and Prometheus addresses are pointed at 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.config import Placement, load_tree
from pipelines.config.checkspec import (
    SPEC_FILE,
    SpecError,
    bundle,
    dumps,
    extract_rendered,
    load_spec,
    read_references,
    reference_names,
    to_spec,
    write,
)
from pipelines.local import stack
from pipelines.local.processes import free_port
from pipelines.local.state import StackState
from tests.checks.conftest import copy_tree, minimal_of
from tests.conftest import FIXTURE

RENDERED = FIXTURE / "gitops" / "rendered" / "uchicago" / "cms" / "minimal"
COMMAND_TIMEOUT = 120  # seconds; the runs below fail fast or finish in seconds


def placements() -> list[Placement]:
    return load_tree(FIXTURE).placements_at()


def ident(p: Placement) -> str:
    return f"{p.site}/{p.experiment}/{p.name}"


# --- the spec file ---------------------------------------------------------------------------------


@pytest.mark.parametrize("p", placements(), ids=ident)
def test_spec_round_trip_gives_the_same_deployment(p: Placement, tmp_path: Path) -> None:
    path = tmp_path / SPEC_FILE
    path.write_text(dumps(to_spec(p)))
    loaded = load_spec(path)
    assert loaded.source == path  # references resolve next to the spec
    assert loaded.model_copy(update={"source": p.source}) == p
    assert dumps(to_spec(loaded)) == path.read_text()  # canonical: byte-identical again


@pytest.mark.parametrize("p", placements(), ids=ident)
def test_written_bundle_resolves_its_references_next_to_the_spec(p: Placement, tmp_path: Path) -> None:
    loaded = load_spec(write(p, tmp_path))
    renamed = reference_names(p)
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted([SPEC_FILE, *renamed.values()])
    for declared, mine in zip(p.checks.models, loaded.checks.models, strict=True):
        assert mine.model_copy(update={"reference": None}) == declared.model_copy(update={"reference": None})
        if declared.reference is None:
            assert mine.reference is None
            continue
        assert mine.reference is not None
        for a, b in (
            (declared.reference.inputs, mine.reference.inputs),
            (declared.reference.outputs, mine.reference.outputs),
        ):
            assert "/" not in b and renamed[a] == b
            assert (tmp_path / b).read_bytes() == (p.source.parent / a).read_bytes()
    # Everything but the reference paths and the source is the deployment as declared.
    assert to_spec(loaded, {v: k for k, v in renamed.items()}) == to_spec(p)


def test_reference_names_are_flat_unique_and_stable(example_tree: Path) -> None:
    path = example_tree / "experiments" / "cms" / "minimal.yaml"
    data = yaml.safe_load(path.read_text())
    ref = data["checks"]["models"][0]["reference"]
    cms = example_tree / "experiments" / "cms"
    (cms / "other").mkdir()
    # Valid reference outputs (validation reads them), under both file names.
    outputs = (cms / "checks" / "btag_mini_outputs.npz").read_bytes()
    for name in ("checks/btag_mini_inputs.npz", "checks/btag_mini_outputs.npz"):
        (cms / "other" / Path(name).name).write_bytes(outputs)
    # Same file name in two folders, and the same file used twice.
    ref["inputs"], ref["outputs"] = "checks/btag_mini_inputs.npz", "other/btag_mini_inputs.npz"
    data["checks"]["models"].append(
        {
            "name": "btag_mini",
            "batchSize": 4,
            "reference": {"inputs": "checks/btag_mini_inputs.npz", "outputs": "other/btag_mini_outputs.npz"},
        }
    )
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    p = load_tree(example_tree).deployment("cms/minimal").placements[0]
    assert reference_names(p) == {
        "checks/btag_mini_inputs.npz": "reference-0-btag_mini_inputs.npz",
        "other/btag_mini_inputs.npz": "reference-1-btag_mini_inputs.npz",
        "other/btag_mini_outputs.npz": "reference-2-btag_mini_outputs.npz",
    }
    assert bundle(p, read_references(p)).references["reference-1-btag_mini_inputs.npz"] == outputs
    assert bundle(p, read_references(p)) == bundle(p, read_references(p))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", ":1:2: not JSON"),
        ('{"specVersion": 2, "deployment": {}}', "specVersion: 2 is not supported"),
        ("[1, 2]", "not a check spec"),
        ('{"specVersion": 1, "deployment": {"name": "x"}}', "deployment.experiment: Field required"),
    ],
)
def test_bad_specs_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / SPEC_FILE
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(path.name) in str(info.value) and message in str(info.value)


def test_a_wrong_field_is_named(tmp_path: Path) -> None:
    p = placements()[0]
    spec = to_spec(p)
    spec["deployment"]["replicas"] = "many"
    path = tmp_path / SPEC_FILE
    path.write_text(dumps(spec))
    with pytest.raises(SpecError, match=r"deployment\.replicas: Input should be a valid integer"):
        load_spec(path)


def test_the_spec_module_stands_alone() -> None:
    """The renderer imports the spec module: that must not load the check runner (and tritonclient)."""
    code = (
        "import sys, pipelines.config.checkspec; "
        "found = sorted({'pipelines.checks.runner', 'tritonclient', 'numpy'} & set(sys.modules)); "
        "print(found); sys.exit(1 if found else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- a rendered directory, as on the GitOps branch ------------------------------------------------


@pytest.mark.parametrize("p", placements(), ids=ident)
def test_a_rendered_directory_holds_the_whole_spec(p: Placement, tmp_path: Path) -> None:
    """What the scheduled checks read from the GitOps branch (issue 10.14) is the deployment itself."""
    from pipelines.config.names import rendered_dir

    spec = extract_rendered(FIXTURE / rendered_dir(p), tmp_path / "spec")
    loaded = load_spec(spec)
    renamed = reference_names(p)
    assert to_spec(loaded, {v: k for k, v in renamed.items()}) == to_spec(p)
    for declared, name in renamed.items():
        assert (spec.parent / name).read_bytes() == (p.source.parent / declared).read_bytes()


def test_rendered_directory_errors_are_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="never rolled out at this site"):
        extract_rendered(tmp_path / "gitops/rendered/uchicago/cms/gone", tmp_path / "out")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "configmap.yaml").write_text("apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n")
    with pytest.raises(SpecError, match="found 0"):
        extract_rendered(tmp_path / "d", tmp_path / "out")
    (tmp_path / "d" / "configmap.yaml").write_text(
        "kind: ConfigMap\ndata: {deployment.json: '{}'}\nbinaryData: {../escape: AAAA}\n"
    )
    with pytest.raises(SpecError, match="not a file name"):
        extract_rendered(tmp_path / "d", tmp_path / "out")


def test_check_of_a_rendered_directory_outside_any_repository(tmp_path: Path) -> None:
    """`sonic check --rendered` needs only the directory: a dead endpoint fails the checks (exit 1)."""
    workdir = tmp_path / "work"
    shutil.copytree(RENDERED, workdir / "gitops/rendered/uchicago/cms/minimal")
    port = free_port()
    args = ["sonic", "check", "--rendered", "gitops/rendered/uchicago/cms/minimal", "--endpoint",
            f"127.0.0.1:{port}", "--timeout", "20", "--metrics-wait", "0"]  # fmt: skip
    result = run_job_command(args, {}, workdir)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "checks of cms/minimal at site uchicago" in result.stdout and "FAIL" in result.stdout
    gone = run_job_command([*args[:3], "gitops/rendered/uchicago/cms/gone", *args[4:]], {}, workdir)
    assert gone.returncode == 1 and "never rolled out" in gone.stderr
    both = run_job_command([*args, "cms/minimal"], {}, workdir)
    assert both.returncode == 2 and "give one of DEPLOYMENT" in both.stderr


# --- sonic check --spec: usage --------------------------------------------------------------------


def check(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["check", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    p = load_tree(FIXTURE).deployment("cms/minimal").placements[0]
    return write(p, tmp_path / "spec")


def test_spec_and_deployment_are_exclusive(spec_file: Path) -> None:
    code, _, err = check("--endpoint", "127.0.0.1:1", "--spec", str(spec_file), "cms/minimal")
    assert code == 2 and "not both" in err
    code, _, err = check("--endpoint", "127.0.0.1:1")
    assert code == 2 and "missing DEPLOYMENT" in err


def test_spec_usage_errors_exit_2(spec_file: Path, tmp_path: Path) -> None:
    code, _, err = check("--endpoint", "127.0.0.1:1", "--spec", str(spec_file), "--site", "geddes")
    assert code == 2 and "at site 'uchicago'" in err
    broken = tmp_path / "broken.json"
    broken.write_text('{"specVersion": 1, "deployment": {"name": 3}}')
    code, _, err = check("--endpoint", "127.0.0.1:1", "--spec", str(broken))
    assert code == 2 and "broken.json: deployment.name" in err and "Traceback" not in err
    code, _, err = check("--endpoint", "127.0.0.1:1", "--spec", str(tmp_path / "nowhere.json"))
    assert code == 2 and "does not exist" in err


# --- the rendered Job, run with only its ConfigMap ---------------------------------------------------


def _objects(directory: Path) -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(directory.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def materialise_job(directory: Path, dest: Path) -> tuple[list[str], dict[str, str]]:
    """The check Job's command, with each ConfigMap volume written out under ``dest``.

    Returns the argument list (``command`` + ``args``, mount paths replaced by the directories
    written) and the container's environment. Only ConfigMap volumes are materialised: the
    Secret volumes (tokens) do not exist here, and the example used has none.
    """
    objs = _objects(directory)
    job = next(o for o in objs if o["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config_maps = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    replace: dict[str, str] = {}
    for volume in pod["volumes"]:
        if "configMap" not in volume:
            continue
        cm = config_maps[volume["configMap"]["name"]]
        target = dest / volume["name"]
        target.mkdir(parents=True)
        for key, text in cm.get("data", {}).items():
            (target / key).write_text(text)
        for key, data in cm.get("binaryData", {}).items():
            (target / key).write_bytes(base64.b64decode(data))
        replace[mounts[volume["name"]]] = str(target)
    args = [*container["command"], *container["args"]]
    for i, arg in enumerate(args):
        for mount, local in replace.items():
            if arg.startswith(mount + "/"):
                args[i] = local + arg[len(mount) :]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    return args, env


def _option(args: list[str], name: str, value: str | None) -> list[str]:
    """``args`` with the value of option ``name`` replaced (``None``: the option removed)."""
    i = args.index(name)
    return [*args[:i], *([name, value] if value is not None else []), *args[i + 2 :]]


def run_job_command(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the container's command here: ``sonic`` is this environment's CLI."""
    assert args[0] == "sonic"
    sonic = Path(sys.executable).parent / "sonic"
    cmd = [str(sonic)] if sonic.exists() else [sys.executable, "-m", "pipelines.cli"]
    home = cwd / "home"
    home.mkdir(exist_ok=True)
    environment = {"PATH": os.environ.get("PATH", ""), **env, "HOME": str(home)}
    return subprocess.run(
        [*cmd, *args[1:]],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def test_job_finds_its_configuration_without_the_repository(tmp_path: Path) -> None:
    """Nothing listens at the endpoint: the checks fail (exit 1), they do not miss their configuration (2)."""
    args, env = materialise_job(RENDERED, tmp_path / "mounts")
    assert "--spec" in args and not any(a.startswith("cms/") for a in args)
    args = _option(args, "--endpoint", f"127.0.0.1:{free_port()}")
    args = _option(args, "--prometheus", f"http://127.0.0.1:{free_port()}")
    workdir = tmp_path / "work"  # not inside any configuration tree, as in the pipeline image
    workdir.mkdir()
    result = run_job_command(args, env, workdir)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "not inside a configuration tree" not in output and "Traceback" not in output
    assert "checks of cms/minimal at site uchicago" in result.stdout
    assert "server.live" in result.stdout and "FAIL" in result.stdout

    # The same command with its ConfigMap missing cannot start: exit 2, so 1 above was the checks.
    spec = next(a for a in args if a.endswith(SPEC_FILE))
    Path(spec).unlink()
    missing = run_job_command(args, env, workdir)
    assert missing.returncode == 2, missing.stdout + missing.stderr


@pytest.fixture(scope="module")
def live_minimal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackState]:
    """cms/minimal on one Triton replica, the rendered Envoy and (if installed) Prometheus."""
    root = copy_tree(tmp_path_factory.mktemp("spec-live"), FIXTURE)
    tree, p = minimal_of(root)
    with stack.running(tree, p, root=root, replicas=1, timeout=90.0) as state:
        yield state


@pytest.mark.integration
def test_job_command_passes_against_a_live_stack(live_minimal: StackState, tmp_path: Path) -> None:
    args, env = materialise_job(RENDERED, tmp_path / "mounts")
    args = _option(args, "--endpoint", live_minimal.endpoint)
    args = _option(args, "--prometheus", live_minimal.prometheus_url)  # removed when not installed
    args += ["--format", "json"]
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_job_command(args, env, workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    statuses = {(c["check"], c["target"]): c["status"] for c in report["checks"]}
    # The reference files came out of the ConfigMap's binaryData.
    assert statuses[("model.reference", "btag_mini")] == "pass"
    assert statuses[("model.infer", "btag_mini")] == statuses[("latency.slo", "btag_mini")] == "pass"
    if live_minimal.prometheus_url is not None:
        assert statuses[("metrics.load", "")] == "pass"
