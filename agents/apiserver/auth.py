"""Authentication (client certificates, bearer tokens) and authorization (RBAC-like
fixed rules: admins, the Node authorizer, component identities). Pure apart from
reading the token file."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field

from .errors import ApiError

ANONYMOUS = "system:anonymous"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""

    @property
    def is_anonymous(self) -> bool:
        return self.name == ANONYMOUS


ADMIN_LOCAL = User("system:admin", ("system:masters", "system:authenticated"))


def load_token_file(path: str) -> dict[str, User]:
    """kube-apiserver's --token-auth-file: token,user,uid,"group1,group2" per line."""
    tokens = {}
    with open(path, newline="") as fh:
        for n, row in enumerate(csv.reader(fh), 1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 3:
                raise ValueError(f"{path}:{n}: expected token,user,uid[,\"groups\"]")
            groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
            tokens[row[0].strip()] = User(row[1].strip(), groups + ("system:authenticated",),
                                          row[2].strip())
    return tokens


def user_from_cert(peercert: dict | None) -> User | None:
    """CN = user name, O = groups, from a verified peer certificate (ssl's dict form)."""
    if not peercert:
        return None
    cn, orgs = None, []
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.append(value)
    if not cn:
        return None
    return User(cn, tuple(orgs) + ("system:authenticated",))


def user_from_token(header: str | None, tokens: dict[str, User]) -> User | None:
    if not header or not header.lower().startswith("bearer "):
        return None
    return tokens.get(header[7:].strip())


@dataclass(frozen=True)
class Attributes:
    verb: str  # get list watch create update patch delete deletecollection
    resource: str = ""  # plural, "" for non-resource paths
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    group: str = ""


PUBLIC_PATHS = {"/healthz", "/readyz", "/livez"}
DISCOVERY_PREFIXES = ("/api", "/apis", "/version", "/openapi")
READ = {"get", "list", "watch"}
WRITE = {"create", "update", "patch"}


@dataclass
class Rule:
    verbs: set[str]
    resources: set[str]  # "plural" or "plural/sub"; "*" for all
    extra: dict = field(default_factory=dict)

    def allows(self, a: Attributes) -> bool:
        res = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        return ("*" in self.verbs or a.verb in self.verbs) and (
            "*" in self.resources or res in self.resources)


COMPONENT_RULES: dict[str, list[Rule]] = {
    "system:kube-scheduler": [
        Rule(READ, {"pods", "nodes", "services", "replicasets", "deployments", "namespaces",
                    "daemonsets", "endpoints"}),
        Rule({"create"}, {"pods/binding", "bindings"}),
        Rule(WRITE, {"pods/status", "events"}),
        Rule({"delete"}, {"pods"}),
        Rule(READ | WRITE | {"delete"}, {"leases"}),
    ],
    "system:kube-controller-manager": [Rule({"*"}, {"*"})],
    "system:kube-proxy": [
        Rule(READ, {"services", "endpoints", "nodes"}),
        Rule(WRITE, {"events"}),
    ],
}


def authorize(user: User, a: Attributes, pod_node: str | None = None) -> bool:
    """May user do a? pod_node: for node identities acting on one pod, the node that pod is
    bound to (the caller looks it up)."""
    if a.path in PUBLIC_PATHS:
        return True
    if user.is_anonymous:
        return False
    if "system:masters" in user.groups:
        return True
    if not a.resource:
        return a.path.startswith(DISCOVERY_PREFIXES)
    if user.name.startswith("system:node:") and "system:nodes" in user.groups:
        return _node_allows(user.name[len("system:node:"):], a, pod_node)
    return any(rule.allows(a) for rule in COMPONENT_RULES.get(user.name, []))


def _node_allows(node: str, a: Attributes, pod_node: str | None) -> bool:
    if a.resource == "nodes":
        return a.verb in READ or (a.name == node and a.verb in WRITE | {"delete"}) or (
            a.verb == "create" and not a.subresource)
    if a.resource == "pods":
        if a.verb in READ and not a.subresource:
            return True
        if a.subresource == "status" and a.verb in {"get", "update", "patch"} or \
                a.verb == "delete" and not a.subresource:
            return pod_node == node
        if a.verb == "create" and a.subresource == "eviction":
            return pod_node == node
        return False
    if a.resource == "leases":
        return a.namespace == "kube-node-lease" and (a.name in (node, "") or a.verb in READ)
    if a.resource == "events":
        return a.verb in WRITE
    if a.resource in ("services", "endpoints", "configmaps", "secrets", "namespaces",
                      "serviceaccounts"):
        return a.verb in READ
    return False


def require(user: User, a: Attributes, pod_node: str | None = None) -> None:
    if authorize(user, a, pod_node):
        return
    if user.is_anonymous:
        raise ApiError(401, "Unauthorized", "Unauthorized")
    what = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    group = f' in API group "{a.group}"' if a.resource else ""
    scope = f' in the namespace "{a.namespace}"' if a.namespace else (
        " at the cluster scope" if a.resource else "")
    target = f'resource "{what}"' if a.resource else f'path "{a.path}"'
    raise ApiError(403, f'{what or a.path} is forbidden: User "{user.name}" cannot {a.verb} '
                        f"{target}{group}{scope}", "Forbidden",
                   {"kind": a.resource, "name": a.name} if a.resource else None)
