"""python -m agents.runtime [--root R] [--image-store S] images | run IMAGE [-- CMD ...]
| shutdown [--grace S]

``images`` lists the node's image store as JSON lines. ``run`` runs one throwaway
container in a throwaway sandbox (own network namespace with only a loopback), prints
its output, removes everything and exits with the container's exit code (the role's
verify suite uses it). Its default root is separate from the kubelet's, so a kubelet
never sees (or collects) these sandboxes. ``shutdown`` ends every container on the node
(``agents.runtime.shutdown``; the runtime role runs it when the node powers off).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid

from agents.runtime.crilog import parse_line
from agents.runtime.model import ContainerConfig, PodSandboxConfig, RuntimeError_
from agents.runtime.network import LoopbackNetwork
from agents.runtime.runtime import DEFAULT_CGROUP_PARENT, Runtime
from agents.runtime.shutdown import end_all


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agents.runtime")
    p.add_argument("--root", default="/var/lib/lab/runtime-cli")
    p.add_argument("--image-store", default="/var/lib/lab/images")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("images", help="list the node's images (JSON lines)")
    run = sub.add_parser("run", help="run a throwaway container and print its output")
    run.add_argument("image")
    run.add_argument("--memory", type=int, default=0, help="memory limit in bytes")
    run.add_argument("--cpu", type=int, default=0, help="cpu limit in millicores")
    run.add_argument("--timeout", type=float, default=60.0, help="seconds before it is killed")
    run.add_argument("argv", nargs=argparse.REMAINDER, help="-- command and arguments")
    down = sub.add_parser("shutdown", help="end every container on the node (at poweroff)")
    down.add_argument("--grace", type=float, default=2.0,
                      help="seconds between SIGTERM and SIGKILL")
    down.add_argument("--cgroup-parent", default=DEFAULT_CGROUP_PARENT)
    return p.parse_args(argv)


def cmd_images(rt: Runtime) -> int:
    for image in rt.list_images():
        print(json.dumps({"ref": image.ref, "id": image.id, "size": image.size_bytes}))
    return 0


def cmd_run(rt: Runtime, args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    uid = uuid.uuid4().hex[:12]
    sid = rt.run_pod_sandbox(PodSandboxConfig(uid=uid, namespace="cli", name=f"run-{uid}"))
    try:
        config = ContainerConfig(
            name="run", image=args.image, command=tuple(argv),
            cpu_millis=args.cpu, memory_limit_bytes=args.memory,
        )  # fmt: skip
        cid = rt.create_container(sid, config)
        rt.start_container(cid)
        deadline = time.monotonic() + args.timeout
        while rt.container_status(cid).state != "exited" and time.monotonic() < deadline:
            time.sleep(0.02)
        rt.stop_container(cid, 0)
        status = rt.container_status(cid)
        with open(status.log_path, "rb") as log:
            for line in log:
                entry = parse_line(line)
                out = sys.stdout.buffer if entry.stream == "stdout" else sys.stderr.buffer
                out.write(entry.content + (b"" if entry.partial else b"\n"))
        if status.reason == "OOMKilled":
            print("labctl-runtime: OOMKilled", file=sys.stderr)
        return status.exit_code
    finally:
        rt.remove_pod_sandbox(sid)
        shutil.rmtree(rt.log_root / f"cli_run-{uid}_{uid}", ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "shutdown":
        ended = end_all(args.cgroup_parent, args.grace)
        print(f"agents.runtime: ended {ended['processes']} container processes "
              f"({ended['killed']} needed SIGKILL, {ended['left']} left)")
        return 1 if ended["left"] else 0
    try:
        rt = Runtime(root=args.root, image_store=args.image_store, network=LoopbackNetwork(),
                     log_root=f"{args.root}/logs")
        if args.command == "images":
            return cmd_images(rt)
        return cmd_run(rt, args)
    except RuntimeError_ as exc:
        print(f"agents.runtime: {exc}", file=sys.stderr)
        return 125


if __name__ == "__main__":
    sys.exit(main())
