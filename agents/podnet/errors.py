"""The pod network's exceptions (agents never import labctl, so not LabError)."""

from __future__ import annotations


class PodNetError(Exception):
    """Bad input or state the pod network cannot work with; the message says what to do."""


class CommandError(PodNetError):
    """A program (`ip`, `nsenter`, `sysctl`) failed; carries its argv, exit code, stderr."""

    def __init__(self, argv: list[str], returncode: int, stderr: str):
        self.argv, self.returncode, self.stderr = argv, returncode, stderr.strip()
        super().__init__(f"`{' '.join(argv)}` exited with {returncode}: {self.stderr}")
