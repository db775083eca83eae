"""Which node directories a rendered pod may mount (``hostPath``), decided in one place.

The only hostPath SONIC renders is the site's CVMFS mount (``storage.cvmfs.hostPath``). A
hostPath volume gives the pod a view of the node's file system, so a wrong value (``/``,
``/etc``, ``/var/run``) would expose the node to every Triton pod of every experiment. The path
must therefore end in a directory named ``cvmfs`` (``/cvmfs``, ``/mnt/cvmfs``): where CVMFS is
mounted, and nothing above it. ``.`` and ``..`` segments are refused by the schema
(``common.schema.json#/$defs/absolutePath``) and again here.
"""

from __future__ import annotations

from pathlib import PurePosixPath

CVMFS_DIRECTORY = "cvmfs"


def cvmfs_host_path_problem(path: str) -> str | None:
    """Why ``path`` may not be the CVMFS hostPath, or None when it may."""
    parts = path.split("/")
    if not path.startswith("/") or any(part in (".", "..") for part in parts):
        return f"hostPath {path!r} must be absolute, without '.' or '..' segments"
    if PurePosixPath(path).name != CVMFS_DIRECTORY:
        return (
            f"hostPath {path!r} would mount more of the node than CVMFS: give the directory where the "
            f"nodes mount CVMFS, whose last segment is {CVMFS_DIRECTORY!r} (such as /cvmfs or /mnt/cvmfs)"
        )
    return None
