"""labctl: build a Kubernetes-style lab out of real hosts."""

__version__ = "0.1.0"
