import copy
import random

import pytest

from agents.apiserver.managedfields import changed_paths, changed_paths_by_leaves

pytestmark = pytest.mark.unit

POD = {
    "metadata": {"labels": {"app": "web"}, "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u1"}]},
    "spec": {"nodeName": "n1", "containers": [
        {"name": "c", "image": "i:1", "env": [{"name": "A", "value": "1"}],
         "resources": {"requests": {"cpu": "10m"}}}]},
    "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "True"}]},
}


def test_a_status_write_changes_only_the_status_leaves_it_touched():
    new = copy.deepcopy(POD)
    new["status"]["phase"] = "Running"
    new["status"]["conditions"].append({"type": "Ready", "status": "True"})
    new["status"]["podIP"] = "10.1.0.2"
    assert changed_paths(POD, new) == {
        ("f:status", "f:phase"), ("f:status", "f:podIP"),
        ("f:status", "f:conditions", 'k:{"type":"Ready"}', "f:type"),
        ("f:status", "f:conditions", 'k:{"type":"Ready"}', "f:status")}
    assert changed_paths(POD, copy.deepcopy(POD)) == set()


# Random objects shaped like the API's: maps, keyed lists (with duplicate keys now and
# then), atomic lists, apiVersion/kind and $-directive keys, empty maps and lists.
KEYED = {"containers": "name", "env": "name", "conditions": "type", "ports": "port"}
PLAIN = ["a", "b", "spec", "status", "apiVersion", "kind", "$patch", "args", "x"]


def random_value(rng: random.Random, depth: int):
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        return rng.choice([1, 2, "s", "t", True, None, 1.0, [], {}, [1, 2], ["s"]])
    if roll < 0.55:
        field = rng.choice(list(KEYED))
        key = KEYED[field]
        return field, [{key: rng.choice(["k1", "k2", "k3", 80]),
                        **random_map(rng, depth + 1, 2)} for _ in range(rng.randint(1, 3))]
    return random_map(rng, depth + 1, 4)


def random_map(rng: random.Random, depth: int, width: int) -> dict:
    out = {}
    for _ in range(rng.randint(0, width)):
        value = random_value(rng, depth)
        if isinstance(value, tuple):
            out[value[0]] = value[1]
        else:
            out[rng.choice(PLAIN)] = value
    return out


def mutate(rng: random.Random, obj, depth: int = 0):
    """A copy of obj with a few random changes."""
    if isinstance(obj, dict):
        out = {k: mutate(rng, v, depth + 1) if rng.random() < 0.5 else v
               for k, v in obj.items() if rng.random() > 0.1}
        if rng.random() < 0.3:
            out.update(random_map(rng, depth + 1, 1))
        return out
    if isinstance(obj, list):
        out = [mutate(rng, i, depth + 1) if rng.random() < 0.5 else i for i in obj]
        if rng.random() < 0.3:
            rng.shuffle(out)
        return out
    return random_value(rng, 4) if rng.random() < 0.3 else obj


@pytest.mark.parametrize("seed", range(300))
def test_the_fast_diff_finds_what_the_definition_finds(seed):
    rng = random.Random(seed)
    old = {**random_map(rng, 0, 6), **random_map(rng, 0, 6)}
    new = mutate(rng, old)
    assert changed_paths(old, new) == changed_paths_by_leaves(old, new)
    assert changed_paths({}, new) == changed_paths_by_leaves({}, new)
