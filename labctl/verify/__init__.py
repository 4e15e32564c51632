"""Verification of a deployed lab: each role's ``verify/test_*.py`` testinfra checks.

    from labctl.verify import verify, VerifyOptions
    result = verify(inventory, pool, "site.yml", VerifyOptions())   # after deploy, same pool
    result.ok, result.results, result.exit_code

A role's checks are plain pytest-testinfra modules, ``roles/<role>/verify/test_*.py``::

    def test_venv_exists(host, hostvars):
        assert host.file(f"{hostvars['lab_venv']}/bin/python").exists

- ``host``: a testinfra Host; a check using it runs once per host the role's plays
  target (after --limit), over the run's pooled SSH connection;
- ``hostvars``: the variables the role saw on that host (its defaults, inventory vars,
  play vars, -e; templated), e.g. ``hostvars["lab_venv"] == "/opt/lab/venv"``;
- ``lab``: the inventory (``lab.hosts``, ``lab.group("etcd")``, ``lab.address(h)``,
  ``lab.vars[h]``); a check using only ``lab`` runs once.

A check that cannot apply to a host calls ``pytest.skip("why")``. A conftest.py in a
role's verify/ directory is honoured; none above the roles' directory, no ini file.

Layout: ``discovery`` (which roles the site applies where, which have suites),
``backend`` (testinfra over the pooled connections), ``labview`` (the ``lab`` and
``hostvars`` fixtures' data), ``plugin`` (the pytest plugin), ``parallel`` (checks of
different hosts and roles at once, in forked processes, reported in order), ``relay``
(their commands, run over this process's connections), ``checks`` (helpers the suites
share), ``smoke``/``cluster`` (the cluster smoke test, alongside the suites),
``results`` (outcomes, text and JSON), ``runner`` (``verify()``).
"""

from labctl.verify.backend import LabBackend, testinfra_host
from labctl.verify.results import CheckResult, VerifyResult
from labctl.verify.runner import VerifyOptions, verify

__all__ = ["CheckResult", "LabBackend", "VerifyOptions", "VerifyResult", "testinfra_host", "verify"]
