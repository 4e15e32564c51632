"""Deployment rollout arithmetic, pure (the numbers kube-controller-manager computes).

- resolve_fenceposts: maxSurge (percent rounds up) and maxUnavailable (percent rounds
  down) of spec.replicas; both 0 would deadlock, so maxUnavailable becomes 1.
- new_rs_replicas: how far the new ReplicaSet may grow: up to replicas + maxSurge pods
  in total across all ReplicaSets.
- old_rs_scale_down: how many old pods may go: total minus (replicas - maxUnavailable)
  minus the new ReplicaSet's pods not yet available; unhealthy old pods go first, then
  available ones only while more than the minimum are available.
- template_hash: the pod-template-hash label: FNV-1a 32 of the canonical template JSON
  (plus collisionCount), in the Kubernetes "safe" alphabet (no vowels, no 0/1/3).
"""

from __future__ import annotations

import copy
import json
import math

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
HASH_LABEL = "pod-template-hash"
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def int_or_percent(value, total: int, round_up: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        try:
            fraction = int(text[:-1]) * total / 100
        except ValueError:
            raise ValueError(f"{value!r} is not an integer or a percentage") from None
        return math.ceil(fraction) if round_up else math.floor(fraction)
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{value!r} is not an integer or a percentage") from None


def resolve_fenceposts(max_surge, max_unavailable, replicas: int) -> tuple[int, int]:
    surge = int_or_percent("25%" if max_surge is None else max_surge, replicas, True)
    unavailable = int_or_percent("25%" if max_unavailable is None else max_unavailable,
                                 replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def new_rs_replicas(replicas: int, max_surge: int, new_current: int, all_current: int) -> int:
    """The new ReplicaSet's next spec.replicas in a rolling update."""
    if new_current >= replicas:
        return replicas  # never above the target (scale down if it was)
    room = replicas + max_surge - all_current
    if room <= 0:
        return new_current
    return new_current + min(room, replicas - new_current)


def max_scale_down(replicas: int, max_unavailable: int, all_current: int,
                   new_spec: int, new_available: int) -> int:
    """Old pods that may be removed now without going under minimum availability (counting
    the new ReplicaSet's not-yet-available pods as unavailable)."""
    min_available = replicas - max_unavailable
    new_unavailable = max(0, new_spec - new_available)
    return all_current - min_available - new_unavailable


def _fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(number: int) -> str:
    digits = str(number)
    return "".join(SAFE_ALPHABET[int(d) * 3 % len(SAFE_ALPHABET)] for d in digits)[:10]


def template_without_hash(template: dict) -> dict:
    out = copy.deepcopy(template or {})
    labels = (out.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return out


def template_hash(template: dict, collision_count: int = 0) -> str:
    canonical = json.dumps(template_without_hash(template), sort_keys=True,
                           separators=(",", ":"))
    if collision_count:
        canonical += f"#{collision_count}"
    return safe_encode(_fnv1a32(canonical.encode()))


def same_template(a: dict, b: dict) -> bool:
    return template_without_hash(a) == template_without_hash(b)


def revision_of(obj: dict) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, 0))
    except ValueError:
        return 0
