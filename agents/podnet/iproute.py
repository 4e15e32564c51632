"""Running `ip` and `sysctl`, in this network namespace or in another one (through
`nsenter --net=PATH`: `ip -n` only takes names under /run/netns, the runtime may hand us
any path). The only module here that starts programs."""

from __future__ import annotations

import json
import os
import subprocess

from .errors import CommandError

NETNS_RUN_DIR = "/run/netns"


def netns_path(netns: str) -> str:
    """A netns given by name (`ip netns add NAME`) or by path → its path."""
    return netns if "/" in netns else os.path.join(NETNS_RUN_DIR, netns)


class Commands:
    """Runs programs in one network namespace: `netns` None is the caller's own."""

    def __init__(self, netns: str | None = None, timeout: float = 30.0):
        self.netns = netns_path(netns) if netns else None
        self.timeout = timeout

    def argv(self, args: list[str]) -> list[str]:
        return ["nsenter", f"--net={self.netns}", "--", *args] if self.netns else list(args)

    def run(self, *args: str, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess:
        argv = self.argv(list(args))
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout,
                              input=input, stdin=None if input is not None else
                              subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise CommandError(argv, proc.returncode, proc.stderr)
        return proc

    def ip_batch(self, commands: list[list[str]]) -> None:
        """Several `ip` commands in one process (`ip -batch`): each program start costs
        milliseconds, tens of them on a busy node."""
        self.run("ip", "-batch", "-", input="".join(" ".join(c) + "\n" for c in commands))

    def ip(self, *args: str) -> str:
        return self.run("ip", *args).stdout

    def ip_json(self, *args: str) -> list[dict]:
        out = self.run("ip", "-j", *args).stdout.strip()
        return json.loads(out) if out else []

    def link_exists(self, name: str) -> bool:
        return self.run("ip", "link", "show", "dev", name, check=False).returncode == 0

    def delete_link(self, name: str) -> None:
        """Delete a link if it is there. A veth whose peer's namespace was just deleted
        vanishes on its own, asynchronously, so "Cannot find device" is success."""
        proc = self.run("ip", "link", "del", "dev", name, check=False)
        if proc.returncode != 0 and self.link_exists(name):
            raise CommandError(self.argv(["ip", "link", "del", "dev", name]),
                               proc.returncode, proc.stderr)

    def sysctl(self, name: str, value: str) -> None:
        self.run("sysctl", "-q", "-w", f"{name}={value}")

    def other(self, netns: str) -> Commands:
        """The same runner for another namespace (a pod's)."""
        return Commands(netns, self.timeout)
