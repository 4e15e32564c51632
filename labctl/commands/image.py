"""``labctl image``: build and inspect the cached base image."""

from __future__ import annotations

import argparse
import json

from labctl.images import ensure_base_image, image_recipe
from labctl.images.cache import image_dirs
from labctl.state import images_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("image", help="build or list the hosts' base image")
    actions = parser.add_subparsers(dest="image_command", metavar="ACTION", required=True)

    build = actions.add_parser(
        "build", help="build the base image if missing or stale (debootstrap; takes minutes)"
    )
    build.add_argument("--rebuild", action="store_true", help="build even if cached")
    build.set_defaults(func=cmd_build)

    containers = actions.add_parser(
        "build-containers",
        help="build the pods' container images (lab/busybox, lab/python) if missing or stale",
    )
    containers.add_argument("--rebuild", action="store_true", help="build even if cached")
    containers.set_defaults(func=cmd_build_containers)

    listing = actions.add_parser("list", help="show cached images (current one marked *)")
    listing.set_defaults(func=cmd_list)


def cmd_build(args: argparse.Namespace) -> int:
    image = ensure_base_image(rebuild=args.rebuild)
    print(f"recipe  {image.recipe_hash}")
    print(f"rootfs  {image.rootfs}")
    print(f"qcow2   {image.qcow2}")
    print(f"kernel  {image.kernel}")
    print(f"initrd  {image.initrd}")
    return 0


def cmd_build_containers(args: argparse.Namespace) -> int:
    from labctl.images.containers import IMAGE_FILE, container_recipe, ensure_container_images

    recipe = container_recipe()
    out = ensure_container_images(rebuild=args.rebuild)
    print(f"recipe  {recipe.hash}")
    for spec in recipe.images:
        manifest = json.loads((out / spec.name / spec.tag / IMAGE_FILE).read_text())
        print(f"{spec.ref:<24} {manifest['size'] / 1e6:6.1f} MB  {out / spec.name / spec.tag}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    current = image_recipe().hash
    dirs = image_dirs(images_dir())
    if not dirs:
        print("no cached images (run `labctl image build`)")
    for path in dirs:
        mark = "*" if path.name == current else " "
        print(f"{mark} {path.name}  {path}")
    return 0
