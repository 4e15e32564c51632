"""The smallest network plugin: the sandbox's namespace keeps only its loopback (the
runtime brings ``lo`` up itself). For tests and the ``run`` CLI; nodes use
agents.podnet's BridgeNetwork, which has the same two methods."""

from __future__ import annotations


class LoopbackNetwork:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def setup(self, sandbox_id: str, netns_path: str) -> str:
        self.calls.append(("setup", sandbox_id, netns_path))
        return ""

    def teardown(self, sandbox_id: str, netns_path: str) -> None:
        self.calls.append(("teardown", sandbox_id, netns_path))
