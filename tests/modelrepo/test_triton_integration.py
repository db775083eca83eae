"""A real Triton (bundled in nvidia-pytriton) serves the --local snapshot; answers equal onnxruntime's."""

from __future__ import annotations

import os
import queue
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import yaml

from pipelines.local.triton import SHM_DIR, TritonError, running_triton
from pipelines.modelrepo.build import BuildResult
from tests.conftest import FIXTURE
from tests.modelrepo.support import Repo, sha256, tagger_entry

pytestmark = pytest.mark.integration

BTAG = FIXTURE / "experiments" / "cms" / "models" / "btag_mini" / "model.onnx"
TIMEOUT = 30.0  # seconds, per gRPC call


def _btag_entry() -> dict[str, Any]:
    minimal = yaml.safe_load((FIXTURE / "experiments" / "cms" / "minimal.yaml").read_text())
    (entry,) = minimal["models"]
    entry["artifact"]["source"] = "models/btag.onnx"
    return dict(entry)


def _infer(
    client: grpcclient.InferenceServerClient, model: str, feeds: dict[str, np.ndarray], outputs: list[str]
) -> list[np.ndarray]:
    inputs = []
    for name, array in feeds.items():
        tensor = grpcclient.InferInput(
            name, list(array.shape), "FP32" if array.dtype == np.float32 else "INT64"
        )
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer(model, inputs, client_timeout=TIMEOUT)
    return [result.as_numpy(o) for o in outputs]


def _exec_count(metrics_url: str, model: str) -> int:
    text = httpx.get(metrics_url, timeout=5).text
    m = re.search(rf'^nv_inference_exec_count\{{model="{model}",version="1"\}} (\d+)', text, re.M)
    assert m is not None, text[:2000]
    return int(m.group(1))


def test_local_snapshot_answers_like_onnxruntime(
    repo: Repo, tmp_path: Path, tagger_bytes: bytes, run_build: Callable[..., BuildResult]
) -> None:
    btag = BTAG.read_bytes()
    repo.write("experiments/demo/models/tagger.onnx", tagger_bytes)
    repo.write("experiments/demo/models/btag.onnx", btag)
    # A long queue delay with a preferred size of 4: four concurrent single requests of the same
    # shape are run as one batch, which exercises the wrapper's batching path deterministically.
    tagger = tagger_entry(tagger_bytes, dynamicBatching={"preferredBatchSize": [4], "maxQueueDelay": "5s"})
    repo.deployment([tagger, _btag_entry()])
    assert sha256(btag) == _btag_entry()["artifact"]["sha256"]
    result = run_build(local=True)
    assert result.local_snapshot is not None
    reference = ort.InferenceSession(tagger_bytes, providers=["CPUExecutionProvider"])
    btag_ref = ort.InferenceSession(btag, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)

    with running_triton([result.local_snapshot], tmp_path / "triton") as server:
        client = grpcclient.InferenceServerClient(server.grpc_address)
        meta = client.get_model_metadata("tagger", as_json=True)
        assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
            ("points", "FP32", ["-1", "-1", "3"]),
            ("ids", "INT64", ["-1", "4"]),
        ]
        assert [(t["name"], t["datatype"]) for t in meta["outputs"]] == [
            ("score", "FP32"),
            ("total", "INT64"),
        ]

        # Single requests of several batch sizes and dynamic lengths (points: [batch, n, 3]).
        for batch, n in ((1, 1), (3, 7), (8, 2)):
            feeds = {
                "points": rng.standard_normal((batch, n, 3)).astype(np.float32),
                "ids": rng.integers(-50, 50, size=(batch, 4)).astype(np.int64),
            }
            got = _infer(client, "tagger", feeds, ["score", "total"])
            want = reference.run(["score", "total"], feeds)
            np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(got[1], want[1])

        # Four concurrent requests: batched into one execution by Triton, split back by the wrapper.
        before = _exec_count(server.metrics_url, "tagger")
        answers: queue.Queue[tuple[int, Any, Any]] = queue.Queue()
        sent = []
        for k in range(4):
            feeds = {
                "points": rng.standard_normal((1, 5, 3)).astype(np.float32),
                "ids": rng.integers(-50, 50, size=(1, 4)).astype(np.int64),
            }
            sent.append(feeds)
            inputs = []
            for name, array in feeds.items():
                t = grpcclient.InferInput(name, list(array.shape), "FP32" if name == "points" else "INT64")
                t.set_data_from_numpy(array)
                inputs.append(t)
            client.async_infer(
                "tagger",
                inputs,
                lambda result, error, k=k: answers.put((k, result, error)),
                client_timeout=TIMEOUT,
            )
        for _ in range(4):
            k, r, e = answers.get(timeout=TIMEOUT)
            assert e is None, e
            want = reference.run(["score", "total"], sent[k])
            np.testing.assert_allclose(r.as_numpy("score"), want[0], rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(r.as_numpy("total"), want[1])
        assert _exec_count(server.metrics_url, "tagger") == before + 1

        # The CMS example model, with the inputs its reference file was made from.
        refs = np.load(FIXTURE / "experiments" / "cms" / "checks" / "btag_mini_inputs.npz")
        feeds = {k: refs[k] for k in ("global_features", "cpf_features")}
        (softmax,) = _infer(client, "btag_mini", feeds, ["softmax"])
        np.testing.assert_allclose(softmax, btag_ref.run(["softmax"], feeds)[0], rtol=1e-5, atol=1e-6)
        client.close()
        pgid, prefix = server.popen.pid, server.shm_prefix

    # Torn down: the whole process group is gone and so are the server's shared-memory regions.
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    assert list(SHM_DIR.glob(f"{prefix}*")) == []


def test_a_model_that_fails_to_load_is_reported_and_nothing_is_left_running(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "config.pbtxt").write_text(
        'name: "broken"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
    )
    (repo / "broken" / "1" / "model.py").write_text(
        "class TritonPythonModel:\n    def initialize(self, args):\n        raise RuntimeError('no weights here')\n"
    )
    workdir = tmp_path / "triton"
    with pytest.raises(TritonError) as info, running_triton([repo], workdir, startup_timeout=60):
        pass
    assert "Triton did not become ready" in str(info.value) and "no weights here" in str(info.value)
    # No process of ours is left: nothing runs with this workdir's backend directory.
    leftovers = []
    for proc in Path("/proc").iterdir():
        try:
            if str(workdir) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                leftovers.append(proc.name)
        except OSError:
            continue
    assert leftovers == []
