"""Bring a model artifact into the cache, verified: files of the experiment and ``https://`` downloads.

Guarantees, whatever the source:

* the bytes are hashed as they are copied (one pass), and enter the cache only when their sha256
  equals the declared one; a mismatch deletes them and raises :class:`FetchError`;
* reading stops at the declared size (required for downloads), never beyond ``FetchPolicy.max_size``
  (the site's ``storage.maxArtifactSize``);
* downloads verify TLS (system trust store, or ``ca_bundle``), follow at most a few redirects,
  each to https and, like the first URL, to a host whose every address is public (not private,
  loopback, link-local, ...: see :func:`check_address`), are streamed into
  ``cache/partial/<sha256>.part`` and resume from it with an HTTP Range request after a dropped
  connection within a run (retries with exponential backoff, by ``tenacity``) or in the next run
  after a crash; one artifact gets ``FetchPolicy.deadline`` seconds in all (a server trickling a
  byte at a time cannot hold the build), and a failed download leaves no partial file.

Sources: ``https://host/path``, or a path relative to the deployment file that must stay inside
the experiment's folder. ``file://`` is refused (a pull request could make the build read any
file of the machine); ``s3://`` is not supported (no S3 server to test against).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import os
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import tenacity

from pipelines.modelrepo.cache import Cache, StatCache
from pipelines.modelrepo.progress import Observer

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
DEFAULT_MAX_SIZE = 32 * GiB
CHUNK = 1 * MiB
MAX_REDIRECTS = 5


class FetchError(Exception):
    """An artifact could not be brought in verified; the message says why, for a person."""


class _Transient(Exception):
    """A failure worth retrying (5xx, 408, 429, a server ignoring our Range)."""


@dataclass(frozen=True)
class FetchPolicy:
    """Limits and retry behaviour for artifact transfers."""

    max_size: int = DEFAULT_MAX_SIZE  # no artifact may be larger (the site's storage.maxArtifactSize)
    ca_bundle: Path | None = None  # trust anchors (PEM) used instead of the system trust store
    attempts: int = 5
    backoff: float = 0.5  # first wait in seconds, doubling up to backoff_max
    backoff_max: float = 20.0
    timeout: float = 30.0  # per network operation (connect, each read)
    deadline: float = 3600.0  # seconds for one artifact, all attempts and redirects included
    chunk: int = CHUNK
    # TESTS ONLY: "ip:port" endpoints exempt from the address check, so tests can serve from
    # 127.0.0.1. Not reachable from the CLI or the rendered workflows (tests check both).
    allow_internal_for_tests: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Source:
    """Where an artifact comes from, resolved."""

    kind: str  # "file" or "https"
    url: str  # the https URL, or the file's absolute path
    path: Path | None = None


@dataclass(frozen=True)
class Fetched:
    """A verified artifact on local disk."""

    path: Path  # in the cache (or, for a dry run of a local file, the source itself)
    size: int
    sha256: str
    transferred: int  # bytes copied or downloaded by this call (0 when the cache already had it)
    note: str = ""  # what happened to a bad cache entry on the way (evicted, fetched again)


def resolve(source: str, base: Path, root: Path) -> Source:
    """Resolve a declared artifact source; relative paths are taken from ``base`` and must stay in ``root``.

    ``root`` is the experiment's folder: a pull request may point only at its own files.
    """
    if source.startswith("https://"):
        parts = urllib.parse.urlsplit(source)
        if parts.username or parts.password:
            raise FetchError("credentials in the URL are not allowed (put them in a Kubernetes Secret)")
        if not parts.hostname:
            raise FetchError(f"{source!r} has no host")
        return Source("https", source)
    if "://" in source:
        scheme = source.split("://", 1)[0]
        raise FetchError(
            f"{scheme}:// sources are not allowed: give an https:// URL or a path relative to the "
            "deployment file, inside the experiment's folder"
        )
    path = (base / source).resolve()  # symlinks followed: a link out of the folder is caught too
    if Path(source).is_absolute() or not path.is_relative_to(root.resolve()):
        raise FetchError(f"{source!r} points outside the experiment's folder ({root.name}/)")
    return Source("file", str(path), path)


def hash_file(
    path: Path, chunk: int = CHUNK, on_bytes: Callable[[int], None] | None = None
) -> tuple[str, int]:
    """sha256 and size of a file, read in chunks."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    size = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
            if on_bytes:
                on_bytes(n)
    return h.hexdigest(), size


def copy_and_hash(
    src: Path, dst: Path, limit: int, chunk: int, on_bytes: Callable[[int], None]
) -> tuple[str, int]:
    """Copy ``src`` to ``dst`` hashing the bytes written (one read of the source); stop beyond ``limit``."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    size = 0
    with open(src, "rb", buffering=0) as fin, open(dst, "wb", buffering=0) as fout:
        while n := fin.readinto(buf):
            size += n
            if size > limit:
                raise FetchError(f"the file is larger than the limit of {limit} bytes; stopped reading")
            h.update(view[:n])
            fout.write(view[:n])
            on_bytes(n)
    return h.hexdigest(), size


def _limit(declared: int | None, policy: FetchPolicy) -> int:
    if declared is not None and declared > policy.max_size:
        raise FetchError(
            f"the declared size ({declared} bytes) is above the limit of {policy.max_size} bytes; not fetched"
        )
    return declared if declared is not None else policy.max_size


def _mismatch(expected: str, got: str) -> FetchError:
    return FetchError(f"sha256 mismatch: declared {expected}, the bytes have {got}; nothing was published")


def fetch(
    source: Source,
    sha256: str,
    size: int | None,
    cache: Cache,
    stat_cache: StatCache,
    policy: FetchPolicy,
    observer: Observer,
    key: str,
    *,
    verify_only: bool = False,
    rehash_cached: bool = False,
) -> Fetched:
    """Bring the artifact into ``cache`` verified (or, with ``verify_only``, just verify a local file).

    A cached copy is re-hashed when its stat changed since it was verified (always, with
    ``rehash_cached``); one whose bytes changed is evicted and fetched again, and ``note`` says so.
    """
    if source.kind == "file":
        assert source.path is not None
        return _fetch_file(
            source.path, sha256, size, cache, stat_cache, policy, observer, key, verify_only, rehash_cached
        )
    if size is None:
        raise FetchError("an https:// artifact needs its size in bytes (artifact.size); not downloaded")
    found = cache.lookup(sha256, size, rehash=rehash_cached)
    if found.path is not None:
        return Fetched(found.path, size, sha256, 0)
    got = _download(source.url, sha256, size, cache, policy, observer, key)
    return _noted(got, found.note, "downloaded it again")


def _fetch_file(
    path: Path,
    sha256: str,
    size: int | None,
    cache: Cache,
    stat_cache: StatCache,
    policy: FetchPolicy,
    observer: Observer,
    key: str,
    verify_only: bool,
    rehash_cached: bool = False,
) -> Fetched:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FetchError(f"file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise FetchError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    if not path.is_file():
        raise FetchError(f"{str(path)!r} is not a regular file")
    if size is not None and st.st_size != size:
        raise FetchError(
            f"size mismatch: declared {size} bytes, the file has {st.st_size}; nothing was published"
        )
    limit = _limit(size, policy)
    if st.st_size > limit:
        raise FetchError(f"the file has {st.st_size} bytes, above the limit of {limit} bytes")
    known = stat_cache.get(path, st)
    if verify_only:  # the source itself is what a dry run checks (and reads the graph of)
        if known == sha256:
            return Fetched(path, st.st_size, sha256, 0)  # unchanged since it was verified
        cached = None
        note = ""
    else:
        found = cache.lookup(sha256, st.st_size, rehash=rehash_cached)
        cached, note = found.path, found.note
        if known == sha256 and cached is not None:
            return Fetched(cached, st.st_size, sha256, 0)  # unchanged since it was verified
    observer.begin(key, f"{'hash' if verify_only or cached else 'copy'} {path.name}", st.st_size)
    try:
        if verify_only or cached is not None:
            got, n = hash_file(path, policy.chunk, lambda b: observer.advance(key, b))
            if got != sha256:
                raise _mismatch(sha256, got)
            stat_cache.put(path, st, sha256)
            return Fetched(cached or path, n, sha256, 0)
        tmp = cache.new_tmp()
        try:
            got, n = copy_and_hash(path, tmp, limit, policy.chunk, lambda b: observer.advance(key, b))
            if got != sha256:
                raise _mismatch(sha256, got)
            if size is not None and n != size:
                raise FetchError(f"size mismatch: declared {size} bytes, read {n}; nothing was published")
            blob = cache.admit(tmp, sha256)
        finally:
            tmp.unlink(missing_ok=True)
        stat_cache.put(path, st, sha256)
        return _noted(Fetched(blob, n, sha256, n), note, "copied it again from the source")
    finally:
        observer.end(key)


def _noted(fetched: Fetched, note: str, then: str) -> Fetched:
    return dataclasses.replace(fetched, note=f"{note}; {then}") if note else fetched


# --- https ----------------------------------------------------------------------------------------

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def _tls_context(policy: FetchPolicy) -> ssl.SSLContext:
    # The system trust store (plus a CA bundle when given); hostname checks and TLS >= 1.2 are defaults.
    return ssl.create_default_context(cafile=str(policy.ca_bundle) if policy.ca_bundle else None)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return ip


def _refuse(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int, policy: FetchPolicy) -> bool:
    if f"{ip}:{port}" in policy.allow_internal_for_tests:
        return False
    # is_global is False for private (10/8, 172.16/12, 192.168/16, fc00::/7), loopback,
    # link-local (169.254/16: cloud metadata; fe80::/10), shared (100.64/10), reserved, unspecified.
    return not ip.is_global or ip.is_multicast


def check_address(host: str, port: int, policy: FetchPolicy) -> None:
    """Refuse ``host`` unless every address it resolves to is a public one.

    A pull request names the URL: without this, the build (inside the cluster) would fetch from
    internal services or the cloud metadata endpoint for it, and report what it found.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _Transient(f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") from None
    for *_, sockaddr in infos:
        ip = _ip(str(sockaddr[0]))
        if _refuse(ip, port, policy):
            raise FetchError(
                f"refusing to connect to {host} ({ip}): not a public address "
                "(private, loopback, link-local or reserved)"
            )


def _check_peer(r: httpx.Response, host: str, port: int, policy: FetchPolicy) -> None:
    """The address actually connected to passes the same check (a DNS answer may change in between)."""
    stream = r.extensions.get("network_stream")
    addr = stream.get_extra_info("server_addr") if stream is not None else None
    if addr:
        ip = _ip(str(addr[0]))
        if _refuse(ip, port, policy):
            raise FetchError(f"refusing {host}: it connected to {ip}, not a public address")


@contextmanager
def _open(
    client: httpx.Client, url: str, headers: dict[str, str], policy: FetchPolicy, timeout: float
) -> Iterator[httpx.Response]:
    """GET ``url``, following redirects by hand: every hop https and checked (:func:`check_address`)."""
    for _ in range(MAX_REDIRECTS + 1):
        target = httpx.URL(url)
        if target.scheme != "https":
            raise FetchError(f"refusing to follow a redirect to a non-https URL ({url})")
        port = target.port or 443
        check_address(target.host, port, policy)
        with client.stream("GET", target, headers=headers, timeout=timeout) as r:
            _check_peer(r, target.host, port, policy)
            if r.is_redirect:
                url = str(r.url.join(r.headers["location"]))
                continue
            yield r
            return
    raise FetchError(f"more than {MAX_REDIRECTS} redirects; not downloaded")


def _tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, _Transient):
        return True
    return isinstance(exc, httpx.TransportError) and not _tls_failure(exc)


def _download(
    url: str,
    sha256: str,
    size: int | None,
    cache: Cache,
    policy: FetchPolicy,
    observer: Observer,
    key: str,
) -> Fetched:
    part = cache.part(sha256)
    limit = _limit(size, policy)
    deadline = time.monotonic() + policy.deadline
    observer.begin(key, f"download {url.rsplit('/', 1)[-1] or url}", size)
    try:
        with httpx.Client(
            verify=_tls_context(policy),
            timeout=httpx.Timeout(policy.timeout),
            follow_redirects=False,  # followed by _open, which checks every hop
            trust_env=False,  # no proxy, .netrc or certificate settings from the environment
            headers={"Accept-Encoding": "identity"},  # byte ranges of the file itself, not of a gzip stream
        ) as client:
            for fresh in (False, True):
                resumed = _download_with_retries(
                    client, url, part, size, limit, policy, observer, key, fresh, deadline
                )
                got, n = hash_file(part, policy.chunk)
                if got == sha256 and (size is None or n == size):
                    return Fetched(cache.admit(part, sha256), n, sha256, n)
                part.unlink(missing_ok=True)
                if not resumed:
                    break  # a download from byte 0 gave wrong bytes: the source is wrong, not our resume
        if got != sha256:
            raise _mismatch(sha256, got)
        raise FetchError(f"size mismatch: declared {size} bytes, downloaded {n}; nothing was published")
    except (FetchError, OSError):
        # A failed download leaves nothing behind (only a killed run leaves a part file to resume).
        part.unlink(missing_ok=True)
        raise
    finally:
        observer.end(key)


def _download_with_retries(
    client: httpx.Client,
    url: str,
    part: Path,
    size: int | None,
    limit: int,
    policy: FetchPolicy,
    observer: Observer,
    key: str,
    fresh: bool,
    deadline: float,
) -> bool:
    """Download into ``part`` until complete; True if any attempt resumed a partial file."""
    if fresh:
        part.unlink(missing_ok=True)
    resumed = False
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=tenacity.wait_exponential(multiplier=policy.backoff, max=policy.backoff_max),
        retry=tenacity.retry_if_exception(_transient),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                resumed |= _download_once(client, url, part, size, limit, policy, observer, key, deadline)
    except FetchError:
        raise
    except (_Transient, httpx.HTTPError) as exc:
        why = "TLS verification failed" if _tls_failure(exc) else str(exc) or type(exc).__name__
        n = policy.attempts if _transient(exc) else 1
        raise FetchError(f"download failed after {n} attempt{'s' if n != 1 else ''}: {why}") from None
    return resumed


def _download_once(
    client: httpx.Client,
    url: str,
    part: Path,
    size: int | None,
    limit: int,
    policy: FetchPolicy,
    observer: Observer,
    key: str,
    deadline: float,
) -> bool:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _late(policy)
    offset = part.stat().st_size if part.exists() else 0
    if offset > limit:
        part.unlink()
        offset = 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    # No single network operation may outlast the artifact's deadline either.
    with _open(client, url, headers, policy, min(policy.timeout, left)) as r:
        if r.status_code == 416 and offset:
            return True  # the partial file is already complete; the hash check decides
        if r.status_code in (408, 429) or r.status_code >= 500:
            raise _Transient(f"HTTP {r.status_code} {r.reason_phrase} from {r.url}")
        if r.status_code == 206 and offset:
            m = _CONTENT_RANGE.match(r.headers.get("content-range", ""))
            if m is None or int(m.group(1)) != offset:
                part.unlink(missing_ok=True)  # a range we did not ask for: start over
                raise _Transient(
                    f"the server answered a different byte range ({r.headers.get('content-range')})"
                )
            mode = "ab"
        elif r.status_code == 200:
            offset, mode = 0, "wb"
        else:
            raise FetchError(f"HTTP {r.status_code} {r.reason_phrase} from {r.url}")
        length = r.headers.get("content-length")
        total = offset + int(length) if length and length.isdigit() else None
        if total is not None and total > limit:
            part.unlink(missing_ok=True)
            raise FetchError(
                f"the server announces {total} bytes, above the limit of {limit} bytes; not downloaded"
            )
        if total is not None and size is not None and total != size:
            part.unlink(missing_ok=True)
            raise FetchError(
                f"size mismatch: declared {size} bytes, the server announces {total}; not downloaded"
            )
        if total is not None:
            observer.total(key, total)
        observer.reset(key, offset)
        written = offset
        with open(part, mode) as f:
            for chunk in r.iter_raw():  # as the bytes arrive: a trickle cannot hide in a buffer
                if time.monotonic() > deadline:
                    raise _late(policy)
                written += len(chunk)
                if written > limit:
                    f.close()
                    part.unlink(missing_ok=True)
                    raise FetchError(f"the download exceeds the limit of {limit} bytes; stopped")
                f.write(chunk)
                observer.advance(key, len(chunk))
            f.flush()
            os.fsync(f.fileno())
    return offset > 0


def _late(policy: FetchPolicy) -> FetchError:
    return FetchError(f"the download did not finish within {policy.deadline:g}s; stopped")
