"""Pod volumes: what to put on disk (pure `plan_volumes`) and writing it (`materialize`).

Layout, as the kubelet's: <state_dir>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name>.
- emptyDir: an empty directory, kept across container restarts, removed with the pod.
- configMap / secret: one file per key (or per `items` entry, at its `path`), mode
  from `defaultMode`/`mode`; secrets are written 0600-ish dirs, files from base64 `data`.
- hostPath: the host's own path (type Directory/File must exist;
  DirectoryOrCreate/FileOrCreate create it).
- projected: configMap/secret/downwardAPI sources merged into one directory.
- downwardAPI: files from fieldRefs.
A volume whose ConfigMap/Secret is missing (and not optional) fails the pod's setup,
as a FailedMount event says.
"""

from __future__ import annotations

import base64
import os
import shutil
from dataclasses import dataclass, field

from .cri import Mount
from .envvars import ConfigError, PodFacts, field_value

PLUGIN = {"emptyDir": "empty-dir", "configMap": "configmap", "secret": "secret",
          "projected": "projected", "downwardAPI": "downward-api"}


@dataclass
class VolumePlan:
    name: str
    host_path: str                      # what containers mount
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # rel path → (data, mode)
    create_dir: bool = True             # make host_path a directory
    host_path_type: str = ""            # for hostPath


def pod_dir(state_dir: str, uid: str) -> str:
    return os.path.join(state_dir, "pods", uid)


def _items(data: dict[str, bytes], items: list | None, default_mode: int,
           what: str) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {k: (v, default_mode) for k, v in data.items()}
    out = {}
    for item in items:
        key = item.get("key")
        if key not in data:
            raise ConfigError(f"{what}: no key {key!r}")
        out[item.get("path") or key] = (data[key], int(item.get("mode") or default_mode))
    return out


def _configmap_data(cm: dict) -> dict[str, bytes]:
    out = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return out


def _secret_data(secret: dict) -> dict[str, bytes]:
    out = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    out.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
    return out


def _source_files(pod, src: dict, kind: str, configmaps, secrets, facts, default_mode):
    ns = (pod.get("metadata") or {}).get("namespace", "")
    if kind == "configMap":
        name = src.get("name", "")
        cm = configmaps(name)
        if cm is None:
            if src.get("optional"):
                return {}
            raise ConfigError(f'configmap "{name}" not found in namespace {ns}')
        return _items(_configmap_data(cm), src.get("items"), default_mode, f"configmap {name}")
    if kind == "secret":
        name = src.get("secretName") or src.get("name", "")
        secret = secrets(name)
        if secret is None:
            if src.get("optional"):
                return {}
            raise ConfigError(f'secret "{name}" not found in namespace {ns}')
        return _items(_secret_data(secret), src.get("items"), default_mode, f"secret {name}")
    if kind == "downwardAPI":
        out = {}
        for item in src.get("items") or []:
            if item.get("fieldRef"):
                value = field_value(pod, item["fieldRef"].get("fieldPath", ""), facts)
                out[item["path"]] = (value.encode(), int(item.get("mode") or default_mode))
        return out
    return {}


def plan_volumes(pod: dict, state_dir: str, facts: PodFacts, configmaps, secrets
                 ) -> dict[str, VolumePlan]:
    uid = pod["metadata"]["uid"]
    base = os.path.join(pod_dir(state_dir, uid), "volumes")
    plans: dict[str, VolumePlan] = {}
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        name = vol["name"]
        if vol.get("hostPath") is not None:
            hp = vol["hostPath"]
            plans[name] = VolumePlan(name, hp["path"], create_dir=False,
                                     host_path_type=hp.get("type") or "")
            continue
        kind = next((k for k in PLUGIN if vol.get(k) is not None), None)
        if kind is None:
            raise ConfigError(f"volume {name}: unsupported type (supported: emptyDir, "
                              "configMap, secret, projected, downwardAPI, hostPath)")
        path = os.path.join(base, f"kubernetes.io~{PLUGIN[kind]}", name)
        src = vol[kind]
        mode = int(src.get("defaultMode") or 0o644)
        files: dict[str, tuple[bytes, int]] = {}
        if kind == "projected":
            for source in src.get("sources") or []:
                for sub in ("configMap", "secret", "downwardAPI"):
                    if source.get(sub) is not None:
                        files.update(_source_files(pod, source[sub], sub, configmaps,
                                                   secrets, facts, mode))
        elif kind != "emptyDir":
            files = _source_files(pod, src, kind, configmaps, secrets, facts, mode)
        for rel in files:
            if rel.startswith("/") or ".." in rel.split("/"):
                raise ConfigError(f"volume {name}: item path {rel!r} must be relative "
                                  "and must not contain '..'")
        plans[name] = VolumePlan(name, path, files)
    return plans


def container_mounts(container: dict, plans: dict[str, VolumePlan]) -> list:
    mounts = []
    for vm in container.get("volumeMounts") or []:
        plan = plans.get(vm["name"])
        if plan is None:
            raise ConfigError(f"container {container['name']}: volumeMount "
                              f"{vm['name']!r} names no volume of the pod")
        host = plan.host_path
        if vm.get("subPath"):
            host = os.path.join(host, vm["subPath"])
        mounts.append(Mount(host, vm["mountPath"], bool(vm.get("readOnly"))))
    return mounts


def materialize(plans: dict[str, VolumePlan]) -> None:
    """Write the planned volumes (idempotent: configMap/secret contents are refreshed)."""
    for plan in plans.values():
        if not plan.create_dir:
            _host_path(plan)
            continue
        os.makedirs(plan.host_path, exist_ok=True)
        for rel, (data, mode) in plan.files.items():
            target = os.path.join(plan.host_path, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = target + ".tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, target)


def _host_path(plan: VolumePlan) -> None:
    path, kind = plan.host_path, plan.host_path_type
    if kind == "DirectoryOrCreate":
        os.makedirs(path, exist_ok=True)
    elif kind == "FileOrCreate":
        os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
        open(path, "a").close()
    elif kind == "Directory" and not os.path.isdir(path):
        raise ConfigError(f"hostPath {path} is not a directory (type Directory)")
    elif kind == "File" and not os.path.isfile(path):
        raise ConfigError(f"hostPath {path} is not a file (type File)")


def remove_pod_dir(state_dir: str, uid: str) -> None:
    shutil.rmtree(pod_dir(state_dir, uid), ignore_errors=True)
