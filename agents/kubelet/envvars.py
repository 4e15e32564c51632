"""A container's environment: a pure function of the pod, the container, the ConfigMaps
and Secrets it names (already fetched) and a few runtime facts.

Order as Kubernetes builds it: service-link variables for the `kubernetes` Service,
then envFrom sources in order (later ones win), then `env` entries (which win over
envFrom); `$(VAR)` in a value expands to an earlier variable, `$$` escapes.
A missing ConfigMap/Secret or key fails the container with CreateContainerConfigError
unless the reference is optional."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from .quantity import cpu_millis, memory_bytes


class ConfigError(Exception):
    """The container cannot be configured (reason CreateContainerConfigError)."""


@dataclass(frozen=True)
class PodFacts:
    pod_ip: str = ""
    host_ip: str = ""
    node_name: str = ""
    kubernetes_service: str = "10.96.0.1:443"   # host:port of the API server's Service


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)
    return _REF.sub(sub, value)


def _secret_value(secret: dict, key: str) -> str | None:
    if key in (secret.get("data") or {}):
        return base64.b64decode(secret["data"][key]).decode(errors="replace")
    return (secret.get("stringData") or {}).get(key)


def _secret_items(secret: dict) -> dict[str, str]:
    out = {k: base64.b64decode(v).decode(errors="replace")
           for k, v in (secret.get("data") or {}).items()}
    out.update(secret.get("stringData") or {})
    return out


def field_value(pod: dict, path: str, facts: PodFacts) -> str:
    meta = pod.get("metadata") or {}
    simple = {"metadata.name": meta.get("name", ""),
              "metadata.namespace": meta.get("namespace", ""),
              "metadata.uid": meta.get("uid", ""),
              "spec.nodeName": facts.node_name or (pod.get("spec") or {}).get("nodeName", ""),
              "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", ""),
              "status.podIP": facts.pod_ip, "status.hostIP": facts.host_ip}
    if path in simple:
        return simple[path]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    raise ConfigError(f"fieldRef {path!r} is not supported (use metadata.name, "
                      "metadata.namespace, metadata.uid, spec.nodeName, status.podIP, "
                      "status.hostIP, metadata.labels['k'] or metadata.annotations['k'])")


def service_env(facts: PodFacts) -> dict[str, str]:
    host, _, port = facts.kubernetes_service.rpartition(":")
    if not host:
        return {}
    return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{port}_TCP_PORT": port,
            f"KUBERNETES_PORT_{port}_TCP_ADDR": host}


def _resource_ref(pod, ref: dict, what: str, lookup) -> dict | None:
    name = ref.get("name", "")
    obj = lookup(name)
    if obj is None and not ref.get("optional"):
        ns = (pod.get("metadata") or {}).get("namespace", "")
        raise ConfigError(f'{what} "{name}" not found in namespace {ns}')
    return obj


def container_env(pod: dict, container: dict, facts: PodFacts, configmaps, secrets
                  ) -> list[tuple[str, str]]:
    """configmaps/secrets: name → object or None (a lookup into the informer caches)."""
    env: dict[str, str] = {}
    if (pod.get("spec") or {}).get("enableServiceLinks", True) is not False:
        env.update(service_env(facts))
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if source.get("configMapRef") is not None:
            cm = _resource_ref(pod, source["configMapRef"], "configmap", configmaps)
            items = dict((cm or {}).get("data") or {})
        elif source.get("secretRef") is not None:
            secret = _resource_ref(pod, source["secretRef"], "secret", secrets)
            items = _secret_items(secret or {})
        else:
            continue
        env.update({prefix + k: v for k, v in items.items()})
    for var in container.get("env") or []:
        name = var["name"]
        if "value" in var or not var.get("valueFrom"):
            env[name] = expand(str(var.get("value") or ""), env)
            continue
        source = var["valueFrom"]
        if source.get("fieldRef"):
            env[name] = field_value(pod, source["fieldRef"].get("fieldPath", ""), facts)
        elif source.get("configMapKeyRef"):
            ref = source["configMapKeyRef"]
            cm = _resource_ref(pod, ref, "configmap", configmaps)
            value = ((cm or {}).get("data") or {}).get(ref.get("key"))
            if value is None:
                if cm is not None and not ref.get("optional"):
                    raise ConfigError(f'couldn\'t find key {ref.get("key")} in ConfigMap '
                                      f'{pod["metadata"].get("namespace")}/{ref.get("name")}')
                continue
            env[name] = value
        elif source.get("secretKeyRef"):
            ref = source["secretKeyRef"]
            secret = _resource_ref(pod, ref, "secret", secrets)
            value = _secret_value(secret or {}, ref.get("key"))
            if value is None:
                if secret is not None and not ref.get("optional"):
                    raise ConfigError(f'couldn\'t find key {ref.get("key")} in Secret '
                                      f'{pod["metadata"].get("namespace")}/{ref.get("name")}')
                continue
            env[name] = value
        elif source.get("resourceFieldRef"):
            env[name] = resource_field(container, source["resourceFieldRef"])
    return list(env.items())


def resource_field(container: dict, ref: dict) -> str:
    what = ref.get("resource", "")
    limits = (container.get("resources") or {}).get("limits") or {}
    if what == "limits.cpu":
        return str(max(1, -(-cpu_millis(limits.get("cpu", "0")) // 1000)))
    if what == "limits.memory":
        return str(memory_bytes(limits.get("memory", "0")))
    raise ConfigError(f"resourceFieldRef {what!r} is not supported")
