"""Run a build and SIGKILL ourselves at an exact point: the crash the snapshot tests inflict.

    python -m tests.modelrepo.kill_build ROOT DEPLOYMENT DEST EVENT N [SLOW]

EVENT is a build stage (fetch, link, publish, lock, ...) killed at its N-th announcement, or
``bytes`` to die once N bytes were copied. SLOW (seconds per chunk) stretches the copy so that a
test can also kill the process from outside while it runs.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from pipelines.config.tree import check_tree
from pipelines.modelrepo.build import BuildOptions, build
from pipelines.modelrepo.progress import Quiet


class KillAt(Quiet):
    def __init__(self, event: str, nth: int, slow: float):
        self.event, self.nth, self.slow = event, nth, slow
        self.seen = 0

    def _die(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def stage(self, name: str, detail: str = "") -> None:
        if name == self.event:
            self.seen += 1
            if self.seen == self.nth:
                self._die()

    def advance(self, key: str, n: int) -> None:
        if self.slow:
            time.sleep(self.slow)
        if self.event == "bytes":
            self.seen += n
            if self.seen >= self.nth:
                self._die()


def main() -> None:
    root, name, dest, event, nth = sys.argv[1:6]
    slow = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    tree, _ = check_tree(Path(root))
    deployment = tree.deployment(name)
    options = BuildOptions(dest=Path(dest), local=True, workers=1)
    build(tree, deployment, options, KillAt(event, int(nth), slow))
    print("completed")


if __name__ == "__main__":
    main()
