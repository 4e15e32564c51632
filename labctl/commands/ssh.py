"""``labctl ssh HOST [-- CMD...]``: OpenSSH to a lab host with the lab's key and pinned host keys."""

from __future__ import annotations

import argparse
import os
import shutil

from labctl import lifecycle
from labctl.commands.status import add_lab_arguments, lab_from_args
from labctl.errors import LabError
from labctl.state import LabState


def ssh_argv(address: str, private_key: str, known_hosts: str, command: list[str]) -> list[str]:
    """The ssh command line (pure): key-only, host key checked against the lab's pins."""
    argv = [
        "ssh",
        "-i", private_key,
        "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "LogLevel=ERROR",
        f"root@{address}",
    ]  # fmt: skip
    if command:
        argv += ["--", *command]
    return argv


def register(sub) -> None:
    parser = sub.add_parser("ssh", help="open a shell or run a command on a lab host")
    add_lab_arguments(parser)
    parser.add_argument("host")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD...: run CMD instead of a shell")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lab, _inv = lab_from_args(args)
    record = lifecycle.find_record(lab, args.host)
    state = LabState.for_lab(lab)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if shutil.which("ssh") is None:
        raise LabError("the `ssh` program is missing: apt-get install openssh-client")
    argv = ssh_argv(record.address, str(state.private_key), str(state.known_hosts), command)
    os.execvp(argv[0], argv)
    return 0  # not reached
