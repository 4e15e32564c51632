"""``labctl stop|start HOST``: single hosts powered off and on through the provider."""

from __future__ import annotations

import pytest

from labctl import hostpower
from labctl.errors import LabError
from tests.unit.test_lifecycle_fake import FakeProvider, inventory, lab, up  # noqa: F401

pytestmark = pytest.mark.unit


def factory(name, root):
    return FakeProvider(root)


def test_stop_then_start_one_host_leaves_the_others_running(lab):  # noqa: F811
    up(inventory("a", "b"))
    taken = hostpower.stop_hosts("fake", ["a"], progress=None, provider_factory=factory)
    assert set(taken) == {"a"}
    assert FakeProvider.hosts == {"a": "stopped", "b": "running"}
    ready = hostpower.start_hosts("fake", ["a"], progress=None, provider_factory=factory)
    assert set(ready) == {"a"}
    assert FakeProvider.hosts == {"a": "running", "b": "running"}
    assert ("start", "a") in FakeProvider.calls


def test_unknown_host_is_a_clear_error_naming_the_known_ones(lab):  # noqa: F811
    up(inventory("a"))
    with pytest.raises(LabError, match=r"no host 'zz' \(hosts: a\)"):
        hostpower.stop_hosts("fake", ["zz"], progress=None, provider_factory=factory)
    assert FakeProvider.hosts == {"a": "running"}
