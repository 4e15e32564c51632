"""``labctl deploy`` argument handling (the run itself is tested on netns hosts)."""

from __future__ import annotations

import argparse
import os

import pytest

from labctl.cli import build_parser
from labctl.commands.deploy import find_site, split_tags
from labctl.errors import LabError

pytestmark = pytest.mark.unit


def test_tags_split_on_commas_and_repeat():
    assert split_tags(["a,b", " c ", ""]) == ("a", "b", "c")


def test_parser_has_the_ansible_flags():
    args = build_parser().parse_args([
        "deploy", "-i", "inv.yml", "--limit", "web:!w1", "--tags", "a", "--skip-tags", "b",
        "--check", "--diff", "--forks", "3", "--json", "-e", "x=1"])
    assert (args.limit, args.tags, args.skip_tags, args.check, args.diff, args.forks, args.json) == (
        "web:!w1", ["a"], ["b"], True, True, 3, True)
    assert args.extra_vars == ["x=1"]


def test_site_is_found_next_to_or_above_the_inventory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inventory").mkdir()
    inv = tmp_path / "inventory" / "lab.yml"
    ns = argparse.Namespace(site=None, inventory=str(inv))
    with pytest.raises(LabError, match="no site.yml"):
        find_site(ns)
    (tmp_path / "site.yml").write_text("- hosts: all\n")
    assert find_site(ns) == tmp_path / "site.yml"
    with pytest.raises(LabError, match="no such file"):
        find_site(argparse.Namespace(site=tmp_path / "nope.yml", inventory=str(inv)))


def test_wheelhouse_key_follows_agents_and_pyproject_and_old_houses_are_pruned(tmp_path):
    from labctl.wheelhouse import prune, tree_key

    root = tmp_path / "src"
    (root / "agents" / "__pycache__").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project.optional-dependencies]\nagents = ["pyyaml"]\n')
    (root / "agents" / "a.py").write_text("x = 1\n")
    key = tree_key(root)
    (root / "agents" / "__pycache__" / "a.pyc").write_bytes(b"junk")
    assert tree_key(root) == key                       # bytecode does not count
    (root / "agents" / "a.py").write_text("x = 2\n")
    assert tree_key(root) != key
    cache = tmp_path / "cache"
    for i, name in enumerate(["deps-1", "h1", "h2", "h3", "h4"]):
        (cache / name).mkdir(parents=True)
        os.utime(cache / name, (i, i))
    prune(cache, keep=2, current=cache / "h1")
    assert sorted(p.name for p in cache.iterdir()) == ["deps-1", "h1", "h4"]
