"""The common role: /opt/lab, the bundles pushed from the lab machine, and the
virtual environment with the agents and their dependencies (unpacked bundles on its
path).

Paths come from the role's variables (``hostvars``), so a lab that moves them is
checked where it put them. The venv is inspected with one python start per host
(python is slow to start on VMs).
"""

import json

import pytest

REQUIREMENTS = "agents-requirements.txt"
BUNDLES = ("agents.tar.gz", "agents-deps.tar.gz")

# Run by the venv's python with the requirements file as argument: where it is, where
# `agents` comes from, and which requirements have no installed distribution.
VENV_REPORT = r"""
import json, re, sys
from importlib import metadata
report = {"prefix": sys.prefix, "agents": None, "error": None, "missing": []}
try:
    import agents
    report["agents"] = agents.__file__
except Exception as exc:
    report["error"] = f"{type(exc).__name__}: {exc}"
with open(sys.argv[1]) as f:
    for line in f:
        line = line.split("#", 1)[0].strip()
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
        if name:
            try:
                metadata.version(name.group(0))
            except metadata.PackageNotFoundError:
                report["missing"].append(line)
print(json.dumps(report))
"""

_reports: dict[str, dict] = {}


@pytest.fixture
def venv(host, hostvars):
    """The venv's report for this host (computed once per host)."""
    name = host.backend.get_hostname()
    if name not in _reports:
        python = f"{hostvars['lab_venv']}/bin/python"
        requirements = f"{hostvars['lab_wheels_dir']}/{REQUIREMENTS}"
        out = host.run("%s -c %s %s", python, VENV_REPORT, requirements)
        assert out.rc == 0, f"{python} cannot run (exit {out.rc}): {out.stderr.strip()}"
        _reports[name] = json.loads(out.stdout)
    return _reports[name]


def test_lab_root_is_a_directory(host, hostvars):
    root = host.file(hostvars["lab_root"])
    assert root.is_directory, f"{root.path} is missing"
    assert root.mode == 0o755, f"{root.path} has mode {root.mode:o}, not 755"


def test_wheels_dir_holds_both_bundles_and_the_requirements(host, hostvars):
    wheels = hostvars["lab_wheels_dir"]
    assert host.file(wheels).is_directory, f"{wheels} is missing"
    names = host.check_output("ls -1 -- %s", wheels).split()
    for wanted in (BUNDLES + (REQUIREMENTS,)):
        assert wanted in names, f"{wheels}/{wanted} is missing (found: {names})"


def test_venv_is_a_virtual_environment(host, hostvars):
    venv = hostvars["lab_venv"]
    assert host.file(f"{venv}/pyvenv.cfg").is_file, f"{venv} is not a virtual environment"
    assert host.file(f"{venv}/bin/python").exists, f"{venv}/bin/python is missing"


def test_venv_python_imports_the_agents_from_the_venv(venv, hostvars):
    assert venv["error"] is None, f"the venv's python cannot import agents: {venv['error']}"
    assert venv["prefix"] == hostvars["lab_venv"]
    assert venv["agents"].startswith(hostvars["lab_venv"] + "/"), (
        f"agents imported from {venv['agents']}, not from the venv")


def test_every_agent_requirement_is_installed_in_the_venv(venv):
    assert venv["missing"] == [], f"not installed in the venv: {', '.join(venv['missing'])}"
