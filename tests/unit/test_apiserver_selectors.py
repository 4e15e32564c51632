import pytest

from agents.apiserver.errors import ApiError
from agents.apiserver.selectors import (
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
    selector_from_match_labels,
    single_name,
)

pytestmark = pytest.mark.unit

LABELS = {"app": "web", "tier": "front", "env": "prod"}


@pytest.mark.parametrize("text, expected", [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app!=web", False),
    ("app=db", False),
    ("missing!=x", True),
    ("tier in (front, back)", True),
    ("tier notin (front)", False),
    ("tier in (front),env=prod", True),
    ("env", True),
    ("!env", False),
    ("!missing", True),
    ("app=web,env in (dev,test)", False),
])
def test_label_selector_matching(text, expected):
    assert labels_match(parse_label_selector(text), LABELS) is expected


def test_label_selector_rejects_garbage():
    with pytest.raises(ApiError) as err:
        parse_label_selector("app=web,==x")
    assert err.value.code == 400


def test_match_labels_object_as_requirements():
    reqs = selector_from_match_labels({"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "env", "operator": "In", "values": ["prod"]},
        {"key": "gone", "operator": "DoesNotExist"}]})
    assert labels_match(reqs, LABELS)
    assert not labels_match(reqs, {"app": "web", "env": "dev"})


POD = {"metadata": {"name": "p", "namespace": "ns"},
       "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}


def test_field_selectors():
    assert fields_match(parse_field_selector("spec.nodeName=n1,status.phase!=Failed", "Pod"), POD)
    assert not fields_match(parse_field_selector("spec.nodeName=", "Pod"), POD)
    assert fields_match(parse_field_selector("spec.nodeName=", "Pod"), {"metadata": {}})
    assert single_name(parse_field_selector("metadata.name=p", "Pod")) == "p"


def test_field_selector_rejects_unsupported_fields():
    with pytest.raises(ApiError) as err:
        parse_field_selector("spec.replicas=3", "Deployment")
    assert err.value.code == 400
    assert "spec.replicas" in err.value.message


def test_event_involved_object_fields():
    ev = {"metadata": {"name": "e"}, "involvedObject": {"uid": "u1", "name": "p", "kind": "Pod"}}
    reqs = parse_field_selector("involvedObject.uid=u1,involvedObject.name=p", "Event")
    assert fields_match(reqs, ev)
