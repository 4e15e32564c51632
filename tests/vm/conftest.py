"""VM-tier plumbing: the same session-wide base image as the lab tier (one build per run)."""

from tests.lab.conftest import base_image  # noqa: F401
