"""`labctl image build|list` wiring (the build itself is faked)."""

from __future__ import annotations

import argparse

import pytest

from labctl.commands import image as image_command
from labctl.images.cache import BaseImage

pytestmark = pytest.mark.unit


def run(argv: list[str]) -> int:
    """Like `labctl ARGV`, with only this command registered (keeps the test fast)."""
    parser = argparse.ArgumentParser(prog="labctl")
    image_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_build_prints_the_image_paths(monkeypatch, tmp_path, capsys):
    calls = []

    def fake_ensure(rebuild=False):
        calls.append(rebuild)
        return BaseImage(tmp_path / "abc", "abc")

    monkeypatch.setattr(image_command, "ensure_base_image", fake_ensure)
    assert run(["image", "build", "--rebuild"]) == 0
    out = capsys.readouterr().out
    assert calls == [True]
    assert f"qcow2   {tmp_path}/abc/base.qcow2" in out
    assert f"rootfs  {tmp_path}/abc/rootfs" in out


def test_list_marks_the_current_recipe(monkeypatch, tmp_path, capsys):
    from labctl.images import image_recipe

    monkeypatch.setenv("LABCTL_HOME", str(tmp_path))
    assert run(["image", "list"]) == 0
    assert "no cached images" in capsys.readouterr().out
    current = image_recipe().hash
    (tmp_path / "images" / current).mkdir(parents=True)
    (tmp_path / "images" / "0000000000000000").mkdir()
    assert run(["image", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"* {current}  {tmp_path}/images/{current}" in lines
    assert any(line.startswith("  0000000000000000") for line in lines)
