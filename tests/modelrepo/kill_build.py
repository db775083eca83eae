"""Run a build and SIGKILL ourselves at an exact point: the crash the snapshot tests inflict.

    python -m tests.modelrepo.kill_build ROOT DEPLOYMENT DEST EVENT N [SLOW]

EVENT is a build stage (fetch, link, publish, lock, ...) killed at its N-th announcement,
``bytes`` to die once N bytes were copied, or ``pause`` to stop once N bytes were copied,
announce it by creating the file named by $SONIC_TEST_PAUSE_FILE, and wait there forever, so
that a test can kill the process from outside in the middle of a copy, whatever the machine's
speed. SLOW (seconds per chunk) stretches the copy.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from pipelines.config.checked import check_tree
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
        if self.event in ("bytes", "pause"):
            self.seen += n
            if self.seen >= self.nth and self.event == "bytes":
                self._die()
            if self.seen >= self.nth and self.event == "pause":
                Path(os.environ["SONIC_TEST_PAUSE_FILE"]).touch()
                while True:  # mid-copy until the test kills us
                    signal.pause()


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
