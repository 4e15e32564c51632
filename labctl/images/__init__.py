"""The lab's base image: recipe (data), mirror discovery, builder and cache.

from labctl.images import ensure_base_image, BaseImage, image_recipe
img = ensure_base_image(progress=None)   # builds when missing; returns at once when cached
img.rootfs, img.qcow2, img.kernel, img.initrd, img.recipe_hash
"""

from labctl.images.cache import BaseImage, ensure_base_image
from labctl.images.recipe import Recipe, image_recipe

__all__ = ["BaseImage", "Recipe", "ensure_base_image", "image_recipe"]
