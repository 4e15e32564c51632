"""Exceptions that the CLI turns into one clear message and a non-zero exit."""


class LabError(Exception):
    """A problem the user can fix: the message says what, where, and what to do."""

    exit_code = 1
