import pytest

from agents.apiserver.compactor import parse_duration
from agents.apiserver.main import parse_args

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text, seconds", [
    ("5m0s", 300), ("300s", 300), ("0", 0), ("1h30m", 5400), ("500ms", 0.5), ("2", 2)])
def test_go_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "m", "5m junk", ""])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_command_line_like_kube_apiserver():
    args = parse_args(["--etcd-servers", "https://10.0.0.2:2379,https://10.0.0.3:2379",
                       "--insecure-port", "8080", "--etcd-compaction-interval", "10m",
                       "--service-node-port-range", "30000-30100"])
    assert args.compaction_interval == 600
    assert args.node_ports == (30000, 30100)
    with pytest.raises(SystemExit):
        parse_args(["--etcd-servers", "http://x:2379"])  # nothing to serve
