"""The project's own error types: the CLI prints them as one line each, never a traceback."""


class GanctlError(Exception):
    """A problem the user can fix; each argument is one line of the message."""

    exit_code = 2

    def __init__(self, *lines: str):
        super().__init__(*lines)
        self.lines = [str(line) for line in lines]

    def __str__(self) -> str:
        return "\n".join(self.lines)


class ConfigError(GanctlError):
    """A config value or combination that cannot run."""


class DataError(GanctlError):
    """A dataset that is missing, unreadable or too small."""


class CheckpointError(GanctlError):
    """A checkpoint that is missing, foreign, truncated or from a newer ganctl."""
