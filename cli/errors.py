"""The one error a command raises for what a user can fix: printed as one line, exit code 2."""

from __future__ import annotations


class CliError(Exception):
    """A problem the user can fix (no such stack, missing key, AWS unreachable); the message says what."""
