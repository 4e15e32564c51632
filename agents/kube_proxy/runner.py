"""Running the rule tools (nft, iptables-restore): the backends' only I/O."""

from __future__ import annotations

import asyncio


class BackendError(RuntimeError):
    """A rule tool refused a transaction (nothing of it was applied)."""


async def run(argv: list[str], stdin: str = "") -> str:
    """Run argv with `stdin`; its stdout, or BackendError with its message."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError:
        raise BackendError(f"{argv[0]} is not installed (install nftables or iptables, "
                           "or choose the other --mode)") from None
    out, err = await proc.communicate(stdin.encode())
    if proc.returncode != 0:
        raise BackendError(f"{' '.join(argv[:2])} exited {proc.returncode}: "
                           f"{(err or out).decode(errors='replace').strip()[:2000]}")
    return out.decode()


async def succeeds(argv: list[str]) -> bool:
    """Whether argv exits 0 (its output discarded)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait() == 0
