"""Daemons pushed to the lab's hosts. Nothing here imports labctl."""
