"""A compact description of the fields of each kind, used for strict unknown-field
checks and to generate the OpenAPI v3 documents kubectl reads.

Notation: a dict is an object with those properties; `[X]` is a list of X;
"s" string, "i" integer, "b" boolean, "n" number, "m" map of strings, "t" timestamp,
"q" quantity or int-or-string, "o" free-form object (not checked), "l" list of strings.
"""

from __future__ import annotations

OWNER_REF = {"apiVersion": "s", "kind": "s", "name": "s", "uid": "s", "controller": "b",
             "blockOwnerDeletion": "b"}
META = {
    "name": "s", "generateName": "s", "namespace": "s", "selfLink": "s", "uid": "s",
    "resourceVersion": "s", "generation": "i", "creationTimestamp": "t",
    "deletionTimestamp": "t", "deletionGracePeriodSeconds": "i", "labels": "m",
    "annotations": "m", "ownerReferences": [OWNER_REF], "finalizers": "l",
    "managedFields": ["o"],
}
LABEL_SELECTOR = {"matchLabels": "m", "matchExpressions": [{"key": "s", "operator": "s",
                                                             "values": "l"}]}
ENV_VAR = {"name": "s", "value": "s", "valueFrom": "o"}
CONTAINER_PORT = {"name": "s", "containerPort": "i", "protocol": "s", "hostPort": "i",
                  "hostIP": "s"}
PROBE = "o"
CONTAINER = {
    "name": "s", "image": "s", "command": "l", "args": "l", "workingDir": "s",
    "ports": [CONTAINER_PORT], "env": [ENV_VAR], "envFrom": ["o"],
    "resources": {"limits": "m", "requests": "m", "claims": ["o"]},
    "resizePolicy": ["o"], "restartPolicy": "s",
    "volumeMounts": [{"name": "s", "mountPath": "s", "readOnly": "b", "subPath": "s",
                      "subPathExpr": "s", "mountPropagation": "s",
                      "recursiveReadOnly": "s"}],
    "volumeDevices": ["o"], "livenessProbe": PROBE, "readinessProbe": PROBE,
    "startupProbe": PROBE, "lifecycle": "o", "terminationMessagePath": "s",
    "terminationMessagePolicy": "s", "imagePullPolicy": "s", "securityContext": "o",
    "stdin": "b", "stdinOnce": "b", "tty": "b",
}
POD_SPEC = {
    "volumes": ["o"], "initContainers": [CONTAINER], "containers": [CONTAINER],
    "ephemeralContainers": ["o"], "restartPolicy": "s", "terminationGracePeriodSeconds": "i",
    "activeDeadlineSeconds": "i", "dnsPolicy": "s", "nodeSelector": "m",
    "serviceAccountName": "s", "serviceAccount": "s", "automountServiceAccountToken": "b",
    "nodeName": "s", "hostNetwork": "b", "hostPID": "b", "hostIPC": "b",
    "shareProcessNamespace": "b", "securityContext": "o", "imagePullSecrets": [{"name": "s"}],
    "hostname": "s", "subdomain": "s", "affinity": "o", "schedulerName": "s",
    "tolerations": ["o"], "hostAliases": ["o"], "priorityClassName": "s", "priority": "i",
    "dnsConfig": "o", "readinessGates": ["o"], "runtimeClassName": "s",
    "enableServiceLinks": "b", "preemptionPolicy": "s", "overhead": "m",
    "topologySpreadConstraints": ["o"], "setHostnameAsFQDN": "b", "os": "o",
    "hostUsers": "b", "schedulingGates": ["o"], "resourceClaims": ["o"], "resources": "o",
}
POD_TEMPLATE = {"metadata": META, "spec": POD_SPEC}
SERVICE_PORT = {"name": "s", "protocol": "s", "appProtocol": "s", "port": "i",
                "targetPort": "q", "nodePort": "i"}
SERVICE_SPEC = {
    "ports": [SERVICE_PORT], "selector": "m", "clusterIP": "s", "clusterIPs": "l",
    "type": "s", "externalIPs": "l", "sessionAffinity": "s", "loadBalancerIP": "s",
    "loadBalancerSourceRanges": "l", "externalName": "s", "externalTrafficPolicy": "s",
    "healthCheckNodePort": "i", "publishNotReadyAddresses": "b",
    "sessionAffinityConfig": "o", "ipFamilies": "l", "ipFamilyPolicy": "s",
    "allocateLoadBalancerNodePorts": "b", "loadBalancerClass": "s",
    "internalTrafficPolicy": "s", "trafficDistribution": "s",
}
DEPLOYMENT_SPEC = {
    "replicas": "i", "selector": LABEL_SELECTOR, "template": POD_TEMPLATE,
    "strategy": {"type": "s", "rollingUpdate": {"maxUnavailable": "q", "maxSurge": "q"}},
    "minReadySeconds": "i", "revisionHistoryLimit": "i", "paused": "b",
    "progressDeadlineSeconds": "i",
}
REPLICASET_SPEC = {"replicas": "i", "minReadySeconds": "i", "selector": LABEL_SELECTOR,
                   "template": POD_TEMPLATE}
DAEMONSET_SPEC = {"selector": LABEL_SELECTOR, "template": POD_TEMPLATE,
                  "updateStrategy": "o", "minReadySeconds": "i", "revisionHistoryLimit": "i"}

_TOP = {"apiVersion": "s", "kind": "s", "metadata": META}

KINDS: dict[str, dict] = {
    "Namespace": {**_TOP, "spec": {"finalizers": "l"}, "status": "o"},
    "Pod": {**_TOP, "spec": POD_SPEC, "status": "o"},
    "Node": {**_TOP, "spec": "o", "status": "o"},
    "Service": {**_TOP, "spec": SERVICE_SPEC, "status": "o"},
    "Endpoints": {**_TOP, "subsets": ["o"]},
    "Event": {**_TOP, "involvedObject": "o", "reason": "s", "message": "s", "source": "o",
              "firstTimestamp": "t", "lastTimestamp": "t", "count": "i", "type": "s",
              "eventTime": "t", "series": "o", "action": "s", "related": "o",
              "reportingComponent": "s", "reportingInstance": "s"},
    "ConfigMap": {**_TOP, "data": "m", "binaryData": "m", "immutable": "b"},
    "Secret": {**_TOP, "data": "m", "stringData": "m", "type": "s", "immutable": "b"},
    "ServiceAccount": {**_TOP, "secrets": ["o"], "imagePullSecrets": ["o"],
                       "automountServiceAccountToken": "b"},
    "Deployment": {**_TOP, "spec": DEPLOYMENT_SPEC, "status": "o"},
    "ReplicaSet": {**_TOP, "spec": REPLICASET_SPEC, "status": "o"},
    "DaemonSet": {**_TOP, "spec": DAEMONSET_SPEC, "status": "o"},
    "Lease": {**_TOP, "spec": {"holderIdentity": "s", "leaseDurationSeconds": "i",
                               "acquireTime": "t", "renewTime": "t",
                               "leaseTransitions": "i", "strategy": "s",
                               "preferredHolder": "s"}},
    "Scale": {**_TOP, "spec": {"replicas": "i"}, "status": "o"},
}


def unknown_fields(obj, schema, path: str = "") -> list[str]:
    """Dotted paths of fields in obj that schema does not declare."""
    found: list[str] = []
    if isinstance(schema, dict) and isinstance(obj, dict):
        for key, value in obj.items():
            where = f"{path}.{key}" if path else key
            if key not in schema:
                found.append(where)
            else:
                found.extend(unknown_fields(value, schema[key], where))
    elif isinstance(schema, list) and isinstance(obj, list):
        for n, item in enumerate(obj):
            found.extend(unknown_fields(item, schema[0], f"{path}[{n}]"))
    return found
