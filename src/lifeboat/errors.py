"""The one exception tree. Every failure a user can meet is a LifeboatError with a one-line message."""

from __future__ import annotations


class LifeboatError(Exception):
    """Base of every error Lifeboat reports to a user. str(err) is the one-line message."""

    exit_code = 1


class ToolMissing(LifeboatError):
    def __init__(self, tool: str, package: str | None = None):
        self.tool = tool
        self.package = package
        hint = f" (Debian package {package})" if package else ""
        super().__init__(f"required tool '{tool}' is not installed{hint}")


def _command(argv: list[str]) -> str:
    """The command as it appears in an error: its first three words."""
    return f"'{' '.join(argv[:3])}{' …' if len(argv) > 3 else ''}'"


class CommandFailed(LifeboatError):
    def __init__(self, argv: list[str], code: int, stderr_tail: str = ""):
        self.argv = list(argv)
        self.code = code
        self.stderr_tail = stderr_tail
        tail = stderr_tail.strip().splitlines()[-1:] if stderr_tail else []
        detail = f": {tail[0]}" if tail else ""
        super().__init__(f"{_command(argv)} failed with exit code {code}{detail}")


class CommandTimedOut(LifeboatError):
    def __init__(self, argv: list[str], seconds: float):
        self.argv = list(argv)
        self.seconds = seconds
        super().__init__(f"{_command(argv)} did not finish within {seconds:.0f} s and was stopped")


class TargetTooSmall(LifeboatError):
    pass


class ImageCorrupt(LifeboatError):
    pass


class ImageNotFound(LifeboatError):
    pass


class RepositoryError(LifeboatError):
    """The repository itself is unusable: missing, unknown format, full, locked."""


class UnsafeTarget(LifeboatError):
    pass


class InvalidName(LifeboatError):
    pass


class Cancelled(LifeboatError):
    exit_code = 130

    def __init__(self, message: str = "cancelled by the user"):
        super().__init__(message)
