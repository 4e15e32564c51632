"""What the runtime persists, and how a status is read back from it.

Per container, under ``<root>/containers/<id>/``:
  ``container.json`` written by the runtime (config, sandbox, image, bundle, cgroup,
                     the shim's pid + start time, the container's pid, started_at);
  ``exit.json``      written once by the container's shim when the process is gone
                     (exit code, finish time, whether the cgroup saw an OOM kill).
Per sandbox, ``<root>/sandboxes/<id>/sandbox.json``. Files are replaced atomically
(write + rename), so a reader never sees half a file. The state a container is in is a
pure function of these records and whether its shim still lives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.runtime.jsonfile import read_json, write_json
from agents.runtime.model import ContainerConfig, ContainerStatus

__all__ = ["read_json", "write_json", "container_status", "exit_reason"]

CONTAINER_FILE = "container.json"
EXIT_FILE = "exit.json"
SANDBOX_FILE = "sandbox.json"


def exit_reason(exit_code: int, oom_killed: bool) -> str:
    if oom_killed and exit_code != 0:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


def container_status(
    record: Mapping[str, Any], exit_record: Mapping[str, Any] | None, shim_alive: bool
) -> ContainerStatus:
    """The status of a container from its records (pure).

    A container whose shim is gone without an exit record (the node rebooted, the shim
    was killed) is reported exited with an unknown exit code, as Kubernetes does.
    """
    config = ContainerConfig.from_dict(record["config"])
    state, exit_code, reason, message, finished = "created", 0, "", "", 0.0
    if record.get("started_at"):
        state = "running"
    if exit_record is not None:
        state = "exited"
        exit_code = int(exit_record.get("exit_code", 255))
        finished = float(exit_record.get("finished_at", 0.0))
        reason = exit_reason(exit_code, bool(exit_record.get("oom_killed")))
        message = str(exit_record.get("message", ""))
    elif not shim_alive:
        state, exit_code, reason = "exited", 255, "Error"
        message = "the container's shim is gone without recording an exit (node restarted?)"
    return ContainerStatus(
        id=record["id"],
        sandbox_id=record["sandbox_id"],
        name=config.name,
        attempt=config.attempt,
        image=record.get("image_ref", config.image),
        state=state,
        pid=int(record.get("pid") or 0) if state == "running" else 0,
        created_at=float(record.get("created_at", 0.0)),
        started_at=float(record.get("started_at") or 0.0),
        finished_at=finished,
        exit_code=exit_code,
        reason=reason,
        message=message,
        log_path=record.get("log_path", ""),
        labels=dict(config.labels),
        annotations=dict(config.annotations),
    )
