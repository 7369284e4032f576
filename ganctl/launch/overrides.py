"""Reading and writing the `key=value` arguments of `ganctl train`'s command line."""

from __future__ import annotations

import re
from typing import Sequence

from ganctl.errors import ConfigError

# Hydra flags after which no job runs: nothing to claim, nothing to move aside.
NO_JOB_FLAGS = (
    "--cfg",
    "-c",
    "--help",
    "-h",
    "--hydra-help",
    "--info",
    "-i",
    "--resolve",
    "--version",
    "-sc",
    "--shell-completion",
)


def split_override(arg: str) -> tuple[str, str] | None:
    """(key without +/~, value) of a `key=value` argument; None for a flag or a bare word."""
    if "=" not in arg or arg.startswith("-"):
        return None
    key, value = arg.split("=", 1)
    return key.lstrip("+~"), value


def is_hydra_override(arg: str) -> bool:
    split = split_override(arg)
    return split is not None and split[0].startswith(("hydra.", "hydra/"))


def resume_target(overrides: Sequence[str]) -> str | None:
    """The checkpoint or run folder `resume=` names, `auto`, or None for a new run."""
    for arg in overrides:
        split = split_override(arg)
        if split and split[0] == "resume" and split[1] not in ("", "null"):
            return split[1]
    return None


def last_values(overrides: Sequence[str]) -> dict[str, str]:
    """The last value the command line gives each key or group (`+`/`~` prefixes dropped)."""
    return {split[0]: split[1] for arg in overrides if (split := split_override(arg)) is not None}


def given_values(overrides: Sequence[str], keys: Sequence[str]) -> dict[str, str]:
    """The last value the command line gives each of `keys`, where it gives one other than null."""
    return {k: v for k, v in last_values(overrides).items() if k in keys and v.strip().lower() not in ("null", "~", "")}


# The keys that set a run's length; the command line gives at most one of them.
LENGTH_KEYS = ("trainer.minutes", "trainer.steps", "trainer.epochs")


def run_length(overrides: Sequence[str]) -> list[str]:
    """What the user's run length needs composed with it: the one length key the command line gives
    decides, so an experiment's trainer.steps cannot outrank the user's trainer.epochs (steps win
    when both are set, and the epochs were ignored). Two of them on one command line are refused."""
    given = given_values(overrides, LENGTH_KEYS)
    keys = [k for k in LENGTH_KEYS if k in given]
    if len(keys) > 1:
        others = " and ".join(f"{k}={given[k]}" for k in keys[1:])
        raise ConfigError(
            f"{keys[0]}={given[keys[0]]} sets the run's length, and so does {others}; "
            "accepted: one of trainer.minutes, trainer.steps, trainer.epochs"
        )
    return ["trainer.steps=null"] if keys == ["trainer.epochs"] else []


def literal_override(args: Sequence[str], key: str) -> str | None:
    """The value of the last `key=VALUE` in args as Hydra reads it; None when absent or when only
    Hydra can resolve it (an interpolation)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = [a for a in args if (split := split_override(a)) is not None and split[0] == key]
    if not given:
        return None
    try:
        value = OverridesParser.create().parse_overrides(given[-1:])[0].value()
    except Exception:  # a malformed override: Hydra itself reports it
        return None
    return value if isinstance(value, str) and "${" not in value else None


def as_override(key: str, value: str) -> str:
    """`key=value` that Hydra's override parser reads back as `value` (a path with spaces, say)."""
    if re.fullmatch(r"[\w./@:+~-]+", value) or "\\" in value:
        return f"{key}={value}"  # backslashes inside quotes have escaping rules of their own: left as typed
    quote = "'" if "'" not in value else '"'
    return f"{key}={quote}{value}{quote}" if quote not in value else f"{key}={value}"


def take_overwrite(args: list[str]) -> tuple[list[str], bool]:
    """`overwrite=true` is ganctl's, not a config key: it is taken out before Hydra sees the command."""
    rest, overwrite = [], False
    for arg in args:
        split = split_override(arg)
        if split is None or split[0] != "overwrite":
            rest.append(arg)
        elif split[1].lower() in ("true", "false"):
            overwrite = split[1].lower() == "true"
        else:
            raise ConfigError(
                f"overwrite={split[1]} is invalid; accepted: overwrite=true (moves the run in the "
                "folder aside to FOLDER.old-N/) or overwrite=false"
            )
    return rest, overwrite
