"""Artifact sources: local files and https downloads (real TLS on 127.0.0.1), verified before use."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from pipelines.config.errors import ConfigError, ConfigErrors
from pipelines.modelrepo.build import BuildResult
from pipelines.modelrepo.cache import Cache, StatCache
from pipelines.modelrepo.fetch import Fetched, FetchError, FetchPolicy, fetch, resolve
from pipelines.modelrepo.progress import Quiet
from pipelines.modelrepo.snapshot import list_snapshots
from tests.modelrepo.https_server import HttpsServer, https_server
from tests.modelrepo.support import SITE, Repo, sha256, tagger_entry

MiB = 1024 * 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HttpsServer]:
    with https_server(tmp_path / "tls") as s:
        yield s


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    c = Cache(tmp_path / "store" / "cache")
    c.prepare()
    return c


def loopback(server: HttpsServer) -> frozenset[str]:
    """The test-only exemption from the public-address check, for exactly this server."""
    return frozenset({server.url.removeprefix("https://")})


def policy(server: HttpsServer, **kw: object) -> FetchPolicy:
    defaults: dict[str, object] = {
        "ca_bundle": server.ca, "attempts": 3, "backoff": 0.01, "backoff_max": 0.05, "timeout": 10,
        "allow_internal_for_tests": loopback(server),
    }  # fmt: skip
    return FetchPolicy(**(defaults | kw))  # type: ignore[arg-type]


def get(
    server: HttpsServer, cache: Cache, path: str, data: bytes, size: int | None = None, **kw: object
) -> Fetched:
    source = resolve(server.url + path, Path("/nowhere"), Path("/nowhere"))
    stat = StatCache(cache.root / "stat-cache.json")
    return fetch(source, sha256(data), size, cache, stat, policy(server, **kw), Quiet(), "k")


def blobs(cache: Cache) -> list[str]:
    return sorted(p.name for p in cache.blobs.iterdir())


# --- sources -------------------------------------------------------------------------------------


def test_only_https_and_the_experiments_own_files_are_sources(tmp_path: Path) -> None:
    experiment = tmp_path / "repo" / "experiments" / "demo"
    (experiment / "models").mkdir(parents=True)
    (experiment / "models" / "passwd").symlink_to("/etc/passwd")
    assert (
        resolve("models/m.onnx", experiment, experiment).path == (experiment / "models" / "m.onnx").resolve()
    )
    for bad in ("../../../etc/passwd", "../other/m.onnx", "/etc/passwd", "models/passwd"):
        with pytest.raises(FetchError, match="points outside the experiment's folder"):
            resolve(bad, experiment, experiment)
    for bad in ("file:///etc/passwd", "file://localhost/etc/passwd", "http://example.org/m.onnx"):
        with pytest.raises(FetchError, match=r"^\w+:// sources are not allowed: give an https:// URL"):
            resolve(bad, experiment, experiment)
    with pytest.raises(FetchError, match="s3:// sources are not allowed"):
        resolve("s3://bucket/m.onnx", experiment, experiment)
    with pytest.raises(FetchError, match="credentials in the URL"):
        resolve("https://user:secret@example.org/m.onnx", experiment, experiment)


def test_local_file_is_copied_hashed_and_then_trusted_while_unchanged(tmp_path: Path, cache: Cache) -> None:
    src = tmp_path / "m.bin"
    data = os.urandom(3 * MiB + 17)
    src.write_bytes(data)
    stats = StatCache(cache.root / "stat-cache.json")
    source = resolve("m.bin", tmp_path, tmp_path)
    first = fetch(source, sha256(data), len(data), cache, stats, FetchPolicy(), Quiet(), "k")
    assert first.transferred == len(data) and first.path == cache.blob(sha256(data))
    assert first.path.read_bytes() == data
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o444  # verified bytes are read-only
    again = fetch(source, sha256(data), len(data), cache, stats, FetchPolicy(), Quiet(), "k")
    assert again.transferred == 0
    # A changed file (same size, new bytes) is hashed again, and rejected.
    src.write_bytes(b"x" * len(data))
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch(source, sha256(data), len(data), cache, stats, FetchPolicy(), Quiet(), "k")


def test_a_file_url_in_a_deployment_reveals_nothing_about_the_file(
    repo: Repo, tagger_bytes: bytes, dest: Path, build_errors: Callable[..., list[ConfigError]]
) -> None:
    # Issue 11, finding 6: the error used to print /etc/passwd's size and sha256.
    repo.deployment([tagger_entry(tagger_bytes, source="file:///etc/passwd")])
    (e,) = build_errors()
    assert e.path == "models[0].artifact.source"
    assert "file:// sources are not allowed" in e.message
    passwd = Path("/etc/passwd").read_bytes()
    assert sha256(passwd) not in e.message and str(len(passwd)) not in e.message
    assert list((dest / "cache" / "sha256").iterdir()) == []


def test_tampered_local_artifact_publishes_nothing(
    repo: Repo, tagger_bytes: bytes, dest: Path, build_errors: Callable[..., list[ConfigError]]
) -> None:
    tampered = bytearray(tagger_bytes)
    tampered[-1] ^= 0xFF
    repo.write("experiments/demo/models/tagger.onnx", bytes(tampered))
    repo.deployment([tagger_entry(tagger_bytes)])
    (e,) = build_errors()
    assert e.path == "models[0].artifact.source"
    assert e.message == (
        f"model 'tagger': artifact 'models/tagger.onnx': sha256 mismatch: declared {sha256(tagger_bytes)}, "
        f"the bytes have {sha256(bytes(tampered))}; nothing was published"
    )
    assert list_snapshots(dest) == []
    assert list((dest / "cache" / "sha256").iterdir()) == []
    assert list((dest / "cache" / "tmp").iterdir()) == []
    assert not (repo.root / "experiments" / "demo" / "locks").exists()


# --- https ---------------------------------------------------------------------------------------


def test_https_download_is_verified_and_cached(server: HttpsServer, cache: Cache) -> None:
    data = os.urandom(2 * MiB)
    server.behaviour.files["/m.onnx"] = data
    got = get(server, cache, "/m.onnx", data, len(data))
    assert got.path.read_bytes() == data and got.transferred == len(data)
    again = get(server, cache, "/m.onnx", data, len(data))
    assert again.transferred == 0 and len(server.behaviour.requests) == 1  # served from the cache


def test_untrusted_certificate_is_refused_without_retrying(
    server: HttpsServer, cache: Cache, tmp_path: Path
) -> None:
    data = b"payload"
    server.behaviour.files["/m.onnx"] = data
    source = resolve(server.url + "/m.onnx", tmp_path, tmp_path)
    stat = StatCache(cache.root / "stat-cache.json")
    # The system trust store does not know the test CA.
    untrusting = FetchPolicy(attempts=3, backoff=0.01, allow_internal_for_tests=loopback(server))
    with pytest.raises(FetchError) as info:
        fetch(source, sha256(data), len(data), cache, stat, untrusting, Quiet(), "k")
    assert str(info.value) == "download failed after 1 attempt: TLS verification failed"
    assert server.behaviour.requests == [] and blobs(cache) == []


def test_resume_after_a_dropped_connection(server: HttpsServer, cache: Cache) -> None:
    data = os.urandom(3 * MiB)
    server.behaviour.files["/m.onnx"] = data
    server.behaviour.drop_after["/m.onnx"] = MiB + 123
    got = get(server, cache, "/m.onnx", data, len(data))
    assert got.path.read_bytes() == data
    (_first, first_range), (_second, second_range) = server.behaviour.requests
    assert first_range is None and second_range is not None
    resumed_at = int(second_range.removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= MiB + 123
    # The dropped response, then only the missing tail.
    assert server.behaviour.sent["/m.onnx"] == (MiB + 123) + (len(data) - resumed_at)


def test_resume_a_partial_file_left_by_a_killed_run(server: HttpsServer, cache: Cache) -> None:
    data = os.urandom(MiB)
    server.behaviour.files["/m.onnx"] = data
    cache.part(sha256(data)).write_bytes(data[:400_000])
    got = get(server, cache, "/m.onnx", data, len(data))
    assert got.path.read_bytes() == data
    assert server.behaviour.requests == [("/m.onnx", "bytes=400000-")]
    assert server.behaviour.sent["/m.onnx"] == len(data) - 400_000
    assert not cache.part(sha256(data)).exists()


def test_a_wrong_partial_file_is_thrown_away_and_downloaded_again(server: HttpsServer, cache: Cache) -> None:
    data = os.urandom(MiB)
    server.behaviour.files["/m.onnx"] = data
    cache.part(sha256(data)).write_bytes(b"\0" * 1000)  # not a prefix of the real bytes
    got = get(server, cache, "/m.onnx", data, len(data))
    assert got.path.read_bytes() == data
    assert server.behaviour.requests == [("/m.onnx", "bytes=1000-"), ("/m.onnx", None)]


def test_announced_size_above_the_declared_size_is_not_downloaded(server: HttpsServer, cache: Cache) -> None:
    data = os.urandom(MiB)
    server.behaviour.files["/m.onnx"] = data
    with pytest.raises(FetchError) as info:
        get(server, cache, "/m.onnx", data, size=1000)
    assert (
        str(info.value)
        == f"the server announces {len(data)} bytes, above the limit of 1000 bytes; not downloaded"
    )
    assert blobs(cache) == [] and not cache.part(sha256(data)).exists()


def test_streaming_stops_at_the_size_limit(server: HttpsServer, cache: Cache) -> None:
    data = os.urandom(32 * MiB)
    server.behaviour.files["/big"] = data
    server.behaviour.no_length.add("/big")  # the limit must hold while streaming, without a header
    # The server lies: it was declared 256 KiB and sends 32 MiB.
    with pytest.raises(FetchError) as info:
        get(server, cache, "/big", data, size=256 * 1024)
    assert str(info.value) == "the download exceeds the limit of 262144 bytes; stopped"
    assert blobs(cache) == [] and not cache.part(sha256(data)).exists()
    assert server.behaviour.sent.get("/big", 0) < len(data)  # the client hung up early


def test_server_errors_are_retried_client_errors_are_not(server: HttpsServer, cache: Cache) -> None:
    data = os.urandom(1000)
    server.behaviour.files["/m.onnx"] = data
    server.behaviour.errors["/m.onnx"] = [503, 502]
    assert get(server, cache, "/m.onnx", data, len(data)).path.read_bytes() == data
    assert len(server.behaviour.requests) == 3
    with pytest.raises(FetchError) as info:
        get(server, cache, "/missing.onnx", b"other", 5)
    assert str(info.value).startswith("HTTP 404 Not Found from https://127.0.0.1:")
    assert [p for p, _ in server.behaviour.requests].count("/missing.onnx") == 1


def test_persistent_server_errors_give_up_after_the_attempts(server: HttpsServer, cache: Cache) -> None:
    data = b"abc"
    server.behaviour.files["/m.onnx"] = data
    server.behaviour.errors["/m.onnx"] = [503] * 5
    with pytest.raises(FetchError) as info:
        get(server, cache, "/m.onnx", data, len(data))
    assert str(info.value).startswith("download failed after 3 attempts: HTTP 503")


def test_redirect_to_plain_http_is_refused(server: HttpsServer, cache: Cache) -> None:
    server.behaviour.redirects["/m.onnx"] = "http://127.0.0.1:9/m.onnx"
    with pytest.raises(FetchError) as info:
        get(server, cache, "/m.onnx", b"x", 1)
    assert str(info.value) == "refusing to follow a redirect to a non-https URL (http://127.0.0.1:9/m.onnx)"


def test_tampered_download_is_rejected_and_nothing_kept(server: HttpsServer, cache: Cache) -> None:
    good = os.urandom(100_000)
    server.behaviour.files["/m.onnx"] = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(FetchError) as info:
        get(server, cache, "/m.onnx", good, len(good))
    assert "sha256 mismatch" in str(info.value)
    assert blobs(cache) == [] and not cache.part(sha256(good)).exists()


def test_https_artifact_in_a_deployment(
    server: HttpsServer, repo: Repo, tagger_bytes: bytes, dest: Path, run_build: Callable[..., BuildResult]
) -> None:
    server.behaviour.files["/models/tagger.onnx"] = tagger_bytes
    url = f"{server.url}/models/tagger.onnx"
    repo.deployment([tagger_entry(tagger_bytes, source=url)])
    result = run_build(policy=policy(server))
    assert result.lock is not None and result.lock.models[0].source == url
    assert result.snapshot is not None
    assert (result.snapshot / "tagger" / "1" / "model.onnx").read_bytes() == tagger_bytes


# --- hostile servers and URLs (issue 11, finding 6) ----------------------------------------------


@pytest.fixture
def other(tmp_path: Path) -> Iterator[HttpsServer]:
    """A second server on 127.0.0.1 standing in for an internal service: it must never be asked."""
    with https_server(tmp_path / "tls-other") as s:
        yield s


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254"),  # cloud metadata (link-local)
        ("https://10.0.0.1/m.onnx", "10.0.0.1"),
        ("https://192.168.1.1/m.onnx", "192.168.1.1"),
        ("https://100.64.0.1/m.onnx", "100.64.0.1"),  # carrier-grade NAT
        ("https://[::1]/m.onnx", "::1"),
        ("https://[fd00::1]/m.onnx", "fd00::1"),
        ("https://[::ffff:10.0.0.1]/m.onnx", "10.0.0.1"),  # IPv4-mapped IPv6
        ("https://0.0.0.0/m.onnx", "0.0.0.0"),
    ],
)
def test_a_redirect_to_an_internal_address_is_refused(
    server: HttpsServer, cache: Cache, target: str, shown: str
) -> None:
    server.behaviour.redirects["/m.onnx"] = target
    with pytest.raises(FetchError) as info:
        get(server, cache, "/m.onnx", b"x", 1)
    assert str(info.value).startswith("refusing to connect to ") and f"({shown})" in str(info.value)
    assert "not a public address" in str(info.value)
    assert [p for p, _ in server.behaviour.requests] == ["/m.onnx"]  # refused, not retried
    assert blobs(cache) == [] and not cache.part(sha256(b"x")).exists()


def test_a_redirect_to_a_name_of_an_internal_host_is_refused_before_connecting(
    server: HttpsServer, other: HttpsServer, cache: Cache
) -> None:
    # Every hop is resolved and checked: a host name is no way around the check, nor is a
    # loopback service on another port than the one the test allows.
    data = b"secret of an internal service"
    other.behaviour.files["/internal"] = data
    port = other.url.rsplit(":", 1)[1]
    for target in (f"https://localhost:{port}/internal", f"{other.url}/internal"):
        server.behaviour.redirects["/m.onnx"] = target
        with pytest.raises(FetchError, match=r"refusing to connect to (localhost|127\.0\.0\.1) \("):
            get(server, cache, "/m.onnx", data, len(data))
    assert other.behaviour.requests == []
    # A redirect to an allowed endpoint is followed: the address check is what refused.
    server.behaviour.files["/moved"] = data
    server.behaviour.redirects["/m.onnx"] = f"{server.url}/moved"
    assert get(server, cache, "/m.onnx", data, len(data)).path.read_bytes() == data


def test_an_internal_first_url_is_refused_too(server: HttpsServer, cache: Cache) -> None:
    server.behaviour.files["/m.onnx"] = b"x"
    with pytest.raises(FetchError, match=r"refusing to connect to 127\.0\.0\.1 \(127\.0\.0\.1\)"):
        get(server, cache, "/m.onnx", b"x", 1, allow_internal_for_tests=frozenset())
    assert server.behaviour.requests == []


def test_too_many_redirects_are_refused(server: HttpsServer, cache: Cache) -> None:
    for i in range(10):
        server.behaviour.redirects[f"/r{i}"] = f"{server.url}/r{i + 1}"
    with pytest.raises(FetchError, match="more than 5 redirects; not downloaded"):
        get(server, cache, "/r0", b"x", 1)
    assert len(server.behaviour.requests) == 6


def test_a_trickling_server_cannot_hold_the_build(server: HttpsServer, cache: Cache) -> None:
    # One byte every 0.2 s: no read ever times out (timeout 10 s), only the deadline stops it.
    data = os.urandom(1000)
    server.behaviour.files["/slow"] = data
    server.behaviour.trickle["/slow"] = 0.2
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        get(server, cache, "/slow", data, len(data), deadline=1.5)
    took = time.monotonic() - started
    assert str(info.value) == "the download did not finish within 1.5s; stopped"
    assert 1.4 < took < 5, took
    assert 0 < server.behaviour.sent["/slow"] < len(data)
    assert blobs(cache) == [] and not cache.part(sha256(data)).exists()  # nothing left behind


def test_a_server_that_stalls_is_bounded_by_the_deadline_not_the_read_timeout(
    server: HttpsServer, cache: Cache
) -> None:
    data = os.urandom(10)
    server.behaviour.files["/stall"] = data
    server.behaviour.trickle["/stall"] = 30.0  # one byte, then silence
    started = time.monotonic()
    with pytest.raises(FetchError, match="did not finish within 1s"):
        get(server, cache, "/stall", data, len(data), deadline=1.0, timeout=30)
    assert time.monotonic() - started < 5
    assert not cache.part(sha256(data)).exists()


def test_a_url_artifact_without_a_size_or_above_the_limit_is_not_requested(
    server: HttpsServer, cache: Cache
) -> None:
    data = os.urandom(1000)
    server.behaviour.files["/m.onnx"] = data
    with pytest.raises(FetchError, match=r"needs its size in bytes \(artifact.size\)"):
        get(server, cache, "/m.onnx", data)
    with pytest.raises(FetchError) as info:
        get(server, cache, "/m.onnx", data, len(data), max_size=999)
    assert str(info.value) == "the declared size (1000 bytes) is above the limit of 999 bytes; not fetched"
    assert server.behaviour.requests == []


def test_a_server_announcing_less_than_declared_is_refused_and_nothing_kept(
    server: HttpsServer, cache: Cache
) -> None:
    data = os.urandom(1000)
    server.behaviour.files["/m.onnx"] = data
    with pytest.raises(FetchError, match="size mismatch: declared 5000 bytes, the server announces 1000"):
        get(server, cache, "/m.onnx", data, 5000)
    assert blobs(cache) == [] and not cache.part(sha256(data)).exists()


def test_a_failed_download_leaves_no_partial_file(server: HttpsServer, cache: Cache) -> None:
    # Half a file (a dropped connection of an earlier try), then only errors: the retries give
    # up, and the half file goes too.
    data = os.urandom(MiB)
    server.behaviour.files["/m.onnx"] = data
    cache.part(sha256(data)).write_bytes(data[:300_000])
    server.behaviour.errors["/m.onnx"] = [503] * 5
    with pytest.raises(FetchError, match="download failed after 3 attempts"):
        get(server, cache, "/m.onnx", data, len(data))
    assert server.behaviour.requests[0] == ("/m.onnx", "bytes=300000-")
    assert not cache.part(sha256(data)).exists()
    assert list(cache.root.rglob("*.part")) == []


def test_the_loopback_exemption_is_for_tests_only() -> None:
    # Neither the CLI nor any rendered workflow can turn the address check off.
    root = Path(__file__).resolve().parents[2]
    for folder in ("pipelines/cli", "gitops/workflows", "gitops/rendered"):
        for path in (root / folder).rglob("*"):
            if path.is_file():
                assert "allow_internal" not in path.read_text(errors="replace"), path
    assert FetchPolicy().allow_internal_for_tests == frozenset()


def test_the_sites_artifact_limit_bounds_every_download_of_a_build(
    server: HttpsServer, repo: Repo, tagger_bytes: bytes, run_build: Callable[..., BuildResult]
) -> None:
    # A site accepts artifacts up to storage.maxArtifactSize: validation says so, and the build
    # holds to it even when asked to build what validation refused.
    site = {**SITE, "storage": {**SITE["storage"], "maxArtifactSize": len(tagger_bytes) - 1}}
    repo.write("gitops/sites/lab.yaml", yaml.safe_dump(site, sort_keys=False))
    server.behaviour.files["/models/tagger.onnx"] = tagger_bytes
    repo.deployment([tagger_entry(tagger_bytes, source=f"{server.url}/models/tagger.onnx")])
    assert any("above the limit for one artifact at site 'lab'" in e for e in repo.errors())
    with pytest.raises(ConfigErrors) as info:
        run_build(policy=policy(server))
    (e,) = info.value.errors
    assert e.message.endswith(
        f"the declared size ({len(tagger_bytes)} bytes) is above the limit of {len(tagger_bytes) - 1} bytes; "
        "not fetched"
    )
    assert server.behaviour.requests == []
