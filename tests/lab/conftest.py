"""Lab-tier plumbing: one base image build per test session, shared by every test.

``base_image`` builds the image on first use (minutes, progress on stderr) and is
instant when the cache already holds the current recipe. The vm tier can reuse it
with ``from tests.lab.conftest import base_image  # noqa: F401`` in its conftest.
"""

from __future__ import annotations

import sys

import pytest

from tests.conftest import need_root, need_tool


@pytest.fixture(scope="session")
def base_image():
    need_root()
    for tool in ("debootstrap", "mkfs.ext4", "qemu-img"):
        need_tool(tool)
    from labctl.images import ensure_base_image

    return ensure_base_image(progress=lambda line: print(f"image: {line}", file=sys.stderr))
