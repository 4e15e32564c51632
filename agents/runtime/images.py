"""The node's image store: ``<store>/<name>/<tag>/`` holds ``image.json`` and ``rootfs/``.

``image.json`` (written by labctl's image builder, shipped by roles/runtime)::

    {"name": "lab/busybox", "tag": "latest", "id": "sha256:…", "size": 2048000,
     "config": {"entrypoint": [], "cmd": ["sh"], "env": ["PATH=…"], "working_dir": "/"}}

``rootfs/`` is the image's tree; containers never write into it (each gets an overlay
on top, or a copy). There is no registry: an image is on the node or it is not.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from agents.runtime.model import ImageConfig, ImageInfo, RuntimeError_
from agents.runtime.state import read_json

IMAGE_FILE = "image.json"
ROOTFS = "rootfs"
DEFAULT_TAG = "latest"
_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def parse_ref(ref: str) -> tuple[str, str]:
    """``"lab/busybox:1.35"`` -> ``("lab/busybox", "1.35")``; no tag means ``latest``."""
    name, tag = ref, DEFAULT_TAG
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = ref.rpartition(":")
    if "@" in ref or not _NAME.match(name) or not _TAG.match(tag):
        raise RuntimeError_(
            f"invalid image reference {ref!r}: expected NAME[:TAG] with a lower-case name "
            "like lab/busybox (digests are not supported)"
        )
    return name, tag


def canonical_ref(ref: str) -> str:
    name, tag = parse_ref(ref)
    return f"{name}:{tag}"


class ImageStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def image_dir(self, ref: str) -> Path:
        name, tag = parse_ref(ref)
        return self.root / name / tag

    def status(self, ref: str) -> ImageInfo | None:
        """The image, or None when the node does not have it (complete)."""
        name, tag = parse_ref(ref)
        where = self.root / name / tag
        data = read_json(where / IMAGE_FILE)
        if data is None or not (where / ROOTFS).is_dir():
            return None
        return ImageInfo(
            ref=f"{name}:{tag}",
            name=name,
            tag=tag,
            id=str(data.get("id", "")),
            size_bytes=int(data.get("size", 0)),
            config=ImageConfig.from_dict(data.get("config") or {}),
            rootfs=str(where / ROOTFS),
        )

    def list(self) -> list[ImageInfo]:
        found = []
        if not self.root.is_dir():
            return found
        for tag_dir in self._image_dirs():
            name = str(tag_dir.parent.relative_to(self.root))
            try:
                info = self.status(f"{name}:{tag_dir.name}")
            except RuntimeError_:
                continue  # not an image directory of ours
            if info is not None:
                found.append(info)
        return found

    def _image_dirs(self) -> list[Path]:
        """Directories holding an image.json; never descends into an image's tree."""
        dirs = []
        for where, subdirs, files in os.walk(self.root):
            if IMAGE_FILE in files:
                dirs.append(Path(where))
                subdirs[:] = []
            subdirs.sort()
        return dirs
