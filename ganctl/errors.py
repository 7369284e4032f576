"""The project's own error types: the CLI prints them as one line each, never a traceback."""

import argparse


class GanctlError(Exception):
    """A problem the user can fix; each argument is one line of the message."""

    exit_code = 2
    prefix = "error: "

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


class StorageError(GanctlError):
    """The environment refused a write: a full disk, a file-size limit, a read-only or missing folder."""

    exit_code = 1


class FolderInUse(GanctlError):
    """Another live process holds the run folder's lock."""

    exit_code = 1


class RunExists(ConfigError):
    """The folder already holds a ganctl run that this command would write over."""


class Diverged(GanctlError):
    """Training produced non-finite losses or weights."""

    exit_code = 1


class Interrupted(GanctlError):
    """SIGINT/SIGTERM: the run stopped cleanly after writing a checkpoint."""

    prefix = ""

    def __init__(self, signum: int, step: int, run_dir):
        import signal

        self.exit_code = 128 + int(signum)  # 130 for SIGINT, 143 for SIGTERM, as shells report them
        super().__init__(
            f"{signal.Signals(signum).name}: stopped at step {step}; checkpoint {run_dir}/checkpoints/last.pt",
            f"resume with: ganctl train resume={run_dir}",
        )


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad option as ganctl's one-line error (exit 2)."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message}; see {self.prog} --help")
