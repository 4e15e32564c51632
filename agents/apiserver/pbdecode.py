"""Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`)
for the kinds kubectl's generator commands send: Deployment, Namespace, Service,
ConfigMap, Secret, ServiceAccount (and the SelfSubjectAccessReview of `kubectl auth
can-i`). Pure.

Wire format: the bytes `k8s\\0`, then a runtime.Unknown message
{1: TypeMeta{1: apiVersion, 2: kind}, 2: raw object bytes, 3: contentEncoding,
4: contentType}. The field numbers below are those of k8s.io/api's generated.proto.
Go's gogo-protobuf writes non-pointer scalars even when empty and zero timestamps as
-62135596800 s, so empty values are dropped after decoding (except fields listed in
KEEP_ZERO, which are pointers in Go and therefore meaningful when zero).
"""

from __future__ import annotations

import base64

from .errors import ApiError

MAGIC = b"k8s\x00"
ZERO_TIME = -62135596800

# message name → {field number: (json name, type, repeated)}
# types: "string", "bytes", "int", "bool", "time", "map", "bytesmap", "quantitymap",
#        "intorstring", or another message name.
S, I, B = "string", "int", "bool"  # noqa: E741
MESSAGES: dict[str, dict[int, tuple[str, str, bool]]] = {
    "Unknown": {1: ("typeMeta", "TypeMeta", False), 2: ("raw", "bytes", False),
                3: ("contentEncoding", S, False), 4: ("contentType", S, False)},
    "TypeMeta": {1: ("apiVersion", S, False), 2: ("kind", S, False)},
    "Time": {1: ("seconds", I, False), 2: ("nanos", I, False)},
    "ObjectMeta": {1: ("name", S, False), 2: ("generateName", S, False),
                   3: ("namespace", S, False), 5: ("uid", S, False),
                   6: ("resourceVersion", S, False), 7: ("generation", I, False),
                   8: ("creationTimestamp", "time", False), 11: ("labels", "map", False),
                   12: ("annotations", "map", False),
                   13: ("ownerReferences", "OwnerReference", True),
                   14: ("finalizers", S, True)},
    "OwnerReference": {1: ("kind", S, False), 3: ("name", S, False), 4: ("uid", S, False),
                       5: ("apiVersion", S, False), 6: ("controller", B, False),
                       7: ("blockOwnerDeletion", B, False)},
    "LabelSelector": {1: ("matchLabels", "map", False),
                      2: ("matchExpressions", "LabelSelectorRequirement", True)},
    "LabelSelectorRequirement": {1: ("key", S, False), 2: ("operator", S, False),
                                 3: ("values", S, True)},
    "Deployment": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "DeploymentSpec", False),
                   3: ("status", "Empty", False)},
    "DeploymentSpec": {1: ("replicas", I, False), 2: ("selector", "LabelSelector", False),
                       3: ("template", "PodTemplateSpec", False),
                       4: ("strategy", "DeploymentStrategy", False),
                       5: ("minReadySeconds", I, False), 6: ("revisionHistoryLimit", I, False),
                       7: ("paused", B, False), 9: ("progressDeadlineSeconds", I, False)},
    "DeploymentStrategy": {1: ("type", S, False),
                           2: ("rollingUpdate", "RollingUpdateDeployment", False)},
    "RollingUpdateDeployment": {1: ("maxUnavailable", "intorstring", False),
                                2: ("maxSurge", "intorstring", False)},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "PodSpec", False)},
    "PodSpec": {2: ("containers", "Container", True), 3: ("restartPolicy", S, False),
                4: ("terminationGracePeriodSeconds", I, False), 6: ("dnsPolicy", S, False),
                7: ("nodeSelector", "map", False), 8: ("serviceAccountName", S, False),
                10: ("nodeName", S, False), 11: ("hostNetwork", B, False),
                19: ("schedulerName", S, False), 20: ("initContainers", "Container", True)},
    "Container": {1: ("name", S, False), 2: ("image", S, False), 3: ("command", S, True),
                  4: ("args", S, True), 5: ("workingDir", S, False),
                  6: ("ports", "ContainerPort", True), 7: ("env", "EnvVar", True),
                  8: ("resources", "ResourceRequirements", False),
                  13: ("terminationMessagePath", S, False), 14: ("imagePullPolicy", S, False),
                  16: ("stdin", B, False), 17: ("stdinOnce", B, False), 18: ("tty", B, False),
                  20: ("terminationMessagePolicy", S, False)},
    "ContainerPort": {1: ("name", S, False), 2: ("hostPort", I, False),
                      3: ("containerPort", I, False), 4: ("protocol", S, False),
                      5: ("hostIP", S, False)},
    "EnvVar": {1: ("name", S, False), 2: ("value", S, False)},
    "ResourceRequirements": {1: ("limits", "quantitymap", False),
                             2: ("requests", "quantitymap", False)},
    "Namespace": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "NamespaceSpec", False),
                  3: ("status", "Empty", False)},
    "NamespaceSpec": {1: ("finalizers", S, True)},
    "Service": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "ServiceSpec", False),
                3: ("status", "Empty", False)},
    "ServiceSpec": {1: ("ports", "ServicePort", True), 2: ("selector", "map", False),
                    3: ("clusterIP", S, False), 4: ("type", S, False),
                    5: ("externalIPs", S, True), 7: ("sessionAffinity", S, False),
                    10: ("externalName", S, False), 18: ("clusterIPs", S, True)},
    "ServicePort": {1: ("name", S, False), 2: ("protocol", S, False), 3: ("port", I, False),
                    4: ("targetPort", "intorstring", False), 5: ("nodePort", I, False),
                    6: ("appProtocol", S, False)},
    "ConfigMap": {1: ("metadata", "ObjectMeta", False), 2: ("data", "map", False),
                  3: ("binaryData", "bytesmap", False), 4: ("immutable", B, False)},
    "Secret": {1: ("metadata", "ObjectMeta", False), 2: ("data", "bytesmap", False),
               3: ("type", S, False), 4: ("stringData", "map", False),
               5: ("immutable", B, False)},
    "ServiceAccount": {1: ("metadata", "ObjectMeta", False),
                       2: ("secrets", "ObjectReference", True),
                       3: ("imagePullSecrets", "LocalObjectReference", True),
                       4: ("automountServiceAccountToken", B, False)},
    "ObjectReference": {1: ("kind", S, False), 2: ("namespace", S, False), 3: ("name", S, False),
                        4: ("uid", S, False), 5: ("apiVersion", S, False),
                        6: ("resourceVersion", S, False), 7: ("fieldPath", S, False)},
    "LocalObjectReference": {1: ("name", S, False)},
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta", False),
                                2: ("spec", "SelfSubjectAccessReviewSpec", False)},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes", False),
                                    2: ("nonResourceAttributes", "NonResourceAttributes",
                                        False)},
    "ResourceAttributes": {1: ("namespace", S, False), 2: ("verb", S, False),
                           3: ("group", S, False), 4: ("version", S, False),
                           5: ("resource", S, False), 6: ("subresource", S, False),
                           7: ("name", S, False)},
    "NonResourceAttributes": {1: ("path", S, False), 2: ("verb", S, False)},
    "Empty": {},
}
DECODABLE_KINDS = {"Deployment", "Namespace", "Service", "ConfigMap", "Secret", "ServiceAccount",
                   "SelfSubjectAccessReview"}
KEEP_ZERO = {"replicas"}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes):
    """(field number, wire type, value) triples; length-delimited values are bytes."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value = buf[pos:pos + length]
            if len(value) != length:
                raise ValueError("truncated field")
            pos += length
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _map_entry(buf: bytes) -> tuple[str, bytes]:
    key, value = "", b""
    for n, _, v in _fields(buf):
        if n == 1:
            key = v.decode()
        elif n == 2:
            value = v
    return key, value


def _scalar(kind: str, wire: int, value):
    if kind == S:
        return value.decode()
    if kind == "bytes":
        return value
    if kind == I:
        return _signed(value)
    if kind == B:
        return bool(value)
    raise ValueError(kind)


def decode_message(name: str, buf: bytes) -> dict:
    spec = MESSAGES[name]
    out: dict = {}
    for number, wire, value in _fields(buf):
        if number not in spec:
            continue  # a field this decoder does not know: skip it
        field, kind, repeated = spec[number]
        if kind in ("map", "bytesmap", "quantitymap"):
            k, v = _map_entry(value)
            if kind == "map":
                v = v.decode()
            elif kind == "bytesmap":
                v = base64.b64encode(v).decode()
            else:
                v = next((x.decode() for n, _, x in _fields(v) if n == 1), "")
            out.setdefault(field, {})[k] = v
            continue
        if kind == "time":
            t = {n: _signed(x) for n, _, x in _fields(value)}
            seconds = t.get(1, 0)
            decoded = None if seconds in (0, ZERO_TIME) else seconds
        elif kind == "intorstring":
            parts = {n: x for n, _, x in _fields(value)}
            decoded = (parts.get(3, b"").decode() if parts.get(1) == 1
                       else _signed(parts.get(2, 0)))
        elif kind in MESSAGES:
            decoded = decode_message(kind, value)
        else:
            decoded = _scalar(kind, wire, value)
        if repeated:
            out.setdefault(field, []).append(decoded)
        else:
            out[field] = decoded
    return out


def _prune(value, field: str = ""):
    """Drop the empty values gogo-protobuf always writes."""
    if isinstance(value, dict):
        pruned = {k: _prune(v, k) for k, v in value.items()}
        return {k: v for k, v in pruned.items()
                if k in KEEP_ZERO or v not in ("", None, 0, False, [], {})}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def decode(body: bytes) -> dict:
    """A protobuf-encoded object as its JSON form; ApiError 415 for kinds we cannot read."""
    if not body.startswith(MAGIC):
        raise ApiError(400, "protobuf body does not start with the k8s\\0 prefix")
    try:
        unknown = decode_message("Unknown", body[len(MAGIC):])
        type_meta = unknown.get("typeMeta") or {}
        kind, api_version = type_meta.get("kind", ""), type_meta.get("apiVersion", "")
        if kind not in DECODABLE_KINDS:
            raise ApiError(415, f"protobuf bodies of kind {kind!r} are not supported; send "
                                "JSON (application/json)", "UnsupportedMediaType")
        obj = _prune(decode_message(kind, unknown.get("raw", b"")))
    except ValueError as exc:
        raise ApiError(400, f"malformed protobuf body: {exc}") from exc
    if isinstance(obj.get("metadata"), dict) and obj["metadata"].get("creationTimestamp") is None:
        obj["metadata"].pop("creationTimestamp", None)
    return {"apiVersion": api_version, "kind": kind, **obj}
