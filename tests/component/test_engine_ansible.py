"""Compatibility with real Ansible: ansible-playbook accepts the shipped site and roles
and the engine's test role (``--syntax-check``); our loader accepts them too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.engine.loader import load_site
from tests.conftest import need

pytestmark = pytest.mark.component

ROOT = Path(__file__).resolve().parents[2]
SITES = [ROOT / "site.yml", ROOT / "tests" / "fixtures" / "site-webapp.yml"]


def ansible_playbook() -> str:
    path = Path(sys.executable).parent / "ansible-playbook"
    found = str(path) if path.exists() else shutil.which("ansible-playbook")
    need(found is not None, "needs ansible-playbook (ansible-core, the `test` extra)")
    return found  # type: ignore[return-value]


@pytest.mark.parametrize("site", SITES, ids=lambda p: str(p.relative_to(ROOT)))
def test_ansible_playbook_syntax_check_accepts_the_site(site, tmp_path):
    env = dict(
        os.environ,
        ANSIBLE_HOME=str(tmp_path / "ansible"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible" / "tmp"),
        ANSIBLE_ROLES_PATH=str(site.parent / "roles"),
        ANSIBLE_NOCOLOR="1",
    )
    proc = subprocess.run([ansible_playbook(), "--syntax-check", str(site)], cwd=site.parent,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"playbook: {site}" in proc.stdout or f"playbook: {site.name}" in proc.stdout


@pytest.mark.parametrize("site", SITES, ids=lambda p: str(p.relative_to(ROOT)))
def test_our_loader_accepts_the_site(site):
    loaded = load_site(site)
    assert loaded.plays and all(play.tasks for play in loaded.plays)
