"""roles/common/verify on netns hosts laid out as the common role leaves them: a good
host passes every check, a host missing the agents bundle, the agents and a dependency fails
exactly those checks, with messages that say what is missing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from labctl.connection import ConnectionPool
from labctl.inventory import load_inventory
from labctl.testing.netns_hosts import NetnsHosts
from labctl.verify import VerifyOptions, verify
from tests.conftest import need_root, need_tool

pytestmark = pytest.mark.component

ROOT = Path(__file__).resolve().parents[2]

# What the common role leaves on a host, made by hand: the pushed bundles, and a venv
# with `agents` and a distribution for each requirement (fake metadata: no network).
LAYOUT = """
set -e
mkdir -p -m 0755 /opt/lab /opt/lab/wheels
touch /opt/lab/wheels/agents.tar.gz /opt/lab/wheels/agents-deps.tar.gz
printf 'PyYAML>=6\\ngrpcio>=1.60,<2  # comment\\n\\n' > /opt/lab/wheels/agents-requirements.txt
python3 -m venv --without-pip /opt/lab/venv
site=$(/opt/lab/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
for dist in PyYAML grpcio; do
  mkdir -p "$site/$dist-1.0.dist-info"
  printf 'Metadata-Version: 2.1\\nName: %s\\nVersion: 1.0\\n' "$dist" > "$site/$dist-1.0.dist-info/METADATA"
done
mkdir -p "$site/agents" && touch "$site/agents/__init__.py"
"""
BREAK = """
site=$(/opt/lab/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf "$site/agents" "$site/grpcio-1.0.dist-info" /opt/lab/wheels/agents.tar.gz
"""


@pytest.fixture
def common_site(tmp_path):
    """A site applying only roles/common, so other roles of site.yml do not interfere."""
    site = tmp_path / "site.yml"
    site.write_text("- hosts: all\n  gather_facts: false\n  roles: [common]\n")
    return site


def test_common_suite_passes_on_a_good_host_and_names_what_is_missing(tmp_path, common_site):
    need_root()
    need_tool("sshd")
    with NetnsHosts(count=2, workdir=tmp_path / "farm") as farm:
        good, bad = farm.hosts
        inventory = load_inventory(farm.write_inventory(tmp_path / "inv.yml"), {})
        with ConnectionPool({h.name: (h.address, h.port) for h in farm.hosts},
                            key_path=farm.key_path, known_hosts=farm.known_hosts) as pool:
            for h in farm.hosts:
                pool.get(h.name).run(LAYOUT, check=True)
            pool.get(bad.name).run(BREAK, check=True)
            out = io.StringIO()
            result = verify(inventory, pool, common_site,
                            VerifyOptions(out=out, roles_path=(ROOT / "roles",)))
    text = out.getvalue()
    assert result.roles == ["common"]
    outcomes = {(r.host, r.check.split("::")[1]): r for r in result.results}
    assert {c for (h, c), r in outcomes.items() if h == good.name and r.outcome == "passed"} == {
        "test_lab_root_is_a_directory",
        "test_wheels_dir_holds_both_bundles_and_the_requirements",
        "test_venv_is_a_virtual_environment",
        "test_venv_python_imports_the_agents_from_the_venv",
        "test_every_agent_requirement_is_installed_in_the_venv",
    }, text
    failed = {c: r.message for (h, c), r in outcomes.items() if r.outcome != "passed"}
    assert set(failed) == {"test_wheels_dir_holds_both_bundles_and_the_requirements",
                           "test_venv_python_imports_the_agents_from_the_venv",
                           "test_every_agent_requirement_is_installed_in_the_venv"}, text
    assert all(h == bad.name for (h, _c), r in outcomes.items() if r.outcome != "passed")
    assert failed["test_venv_python_imports_the_agents_from_the_venv"].startswith(
        "the venv's python cannot import agents: ModuleNotFoundError: No module named 'agents'")
    assert failed["test_wheels_dir_holds_both_bundles_and_the_requirements"].startswith(
        "/opt/lab/wheels/agents.tar.gz is missing")
    assert failed["test_every_agent_requirement_is_installed_in_the_venv"].startswith(
        "not installed in the venv: grpcio>=1.60,<2")
    assert result.exit_code == 1
