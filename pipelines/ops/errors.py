"""The failure of a call to another service (GitHub, a git remote, a Pushgateway).

``transient`` says whether trying again later may help (network trouble, a 5xx, a rate limit, a
lost push race). The CLI turns a transient failure into exit code 2, which the workflows'
retryStrategy retries, and any other into exit code 1, which it does not.
"""

from __future__ import annotations


class RemoteError(Exception):
    """A remote call failed; ``transient`` when retrying later may help."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient
