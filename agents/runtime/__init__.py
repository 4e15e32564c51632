"""The container runtime the kubelet calls (a small CRI-like API over runc).

    from agents.runtime import Runtime, PodSandboxConfig, ContainerConfig, DnsConfig
    rt = Runtime(root="/var/lib/lab/runtime", image_store="/var/lib/lab/images",
                 network=plugin, log_root="/var/log/pods")
    sid = rt.run_pod_sandbox(PodSandboxConfig(uid, namespace, name, hostname, dns=...))
    cid = rt.create_container(sid, ContainerConfig(name, "lab/busybox", command=[...]))
    rt.start_container(cid); rt.container_status(cid); rt.stop_container(cid, 30)

See docs/images.md for the image store and worker-design for the whole interface.
"""

# Imported on first use (PEP 562): the per-container shim imports agents.runtime.shim,
# which runs this file first and must start fast (not even `importlib`: __import__).
_EXPORTS = {
    "ContainerConfig": "model", "ContainerStatus": "model", "DnsConfig": "model",
    "ExecTimeout": "model", "ImageConfig": "model", "ImageInfo": "model", "Mount": "model",
    "NotFound": "model", "PodSandboxConfig": "model", "RuntimeError_": "model",
    "SandboxStatus": "model", "LoopbackNetwork": "network", "NetworkPlugin": "runtime",
    "Runtime": "runtime",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'agents.runtime' has no attribute {name!r}")
    return getattr(__import__(f"agents.runtime.{_EXPORTS[name]}", fromlist=[name]), name)
