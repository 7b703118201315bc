"""Errors that reach the user as one clear line and exit status 2."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user: a file, a line, a key or a value that cannot be used.

    The message names where the problem is (file, line, key) so that one line is enough.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.message = message
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
        if self.key is not None:
            where = f"{where}: {self.key}" if where else self.key
        return f"{where}: {self.message}" if where else self.message


class ServerUnavailable(Exception):
    """A server that a run needs did not answer (URL in the message)."""
