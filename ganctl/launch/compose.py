"""Hydra composition: ganctl's conf/ folder, its group options, and configs composed and typed."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

from ganctl.errors import ConfigError
from ganctl.launch.overrides import split_override

GROUPS = ("dataset", "model", "loss", "optim", "trainer", "experiment", "hparams_search")
T = TypeVar("T")


def conf_dir() -> Path:
    """Configs of an installed wheel (ganctl/conf), else of a source checkout (<repo>/conf)."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise RuntimeError(f"ganctl's conf/ folder is missing next to {package}; reinstall ganctl")


def register_schema() -> None:
    """The typed schema as Hydra's `schema` config, which conf/train.yaml lists first."""
    from hydra.core.config_store import ConfigStore

    from ganctl.config import RunConfig

    ConfigStore.instance().store(name="schema", node=RunConfig)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def check_group_options(overrides: Sequence[str]) -> None:
    """`loss=foo` -> one line naming the value and the options; also for each value of a sweep."""
    problems = []
    for arg in overrides:
        split = split_override(arg)
        if split is None or split[0] not in GROUPS:
            continue
        key, value = split
        if any(tok in value for tok in ("(", "${")):
            continue  # glob(...), range(...), interpolations: Hydra expands these
        known = options(key)
        for choice in value.split(","):
            if choice.strip() not in known:
                problems.append(f"{key}={choice.strip()!r} is not a known option; accepted: {', '.join(known)}")
    if problems:
        raise ConfigError(*problems)


def hydra_message(exc: BaseException) -> str:
    """One line from Hydra/OmegaConf's multi-line errors: the key and the first real reason."""
    texts = []
    while exc is not None:
        texts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    lines = [ln.strip() for t in texts for ln in t.splitlines() if ln.strip()]
    keep = [
        ln
        for ln in lines
        if not ln.startswith(("full_key", "object_type", "reference_type", "Set the environment", "To append"))
    ]
    full_key = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("full_key")), None)
    msg = "; ".join(dict.fromkeys(keep[:2]))
    return f"{full_key}: {msg}" if full_key and full_key not in msg else msg


def checked(compose: Callable[[], T]) -> T:
    """`compose()`, with Hydra's and OmegaConf's errors turned into one ConfigError line."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return compose()
    except (OmegaConfBaseException, ValueError, TypeError) as exc:
        raise ConfigError(hydra_message(exc)) from None
    except Exception as exc:  # Hydra's composition errors share no public base class
        if type(exc).__module__.startswith(("hydra", "omegaconf")):
            raise ConfigError(hydra_message(exc)) from None
        raise


@contextmanager
def hydra_session() -> Iterator[object]:
    """Hydra set up on ganctl's conf/ while the block runs; yields Hydra's own app object."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_schema()
    with initialize_config_dir(str(conf_dir()), version_base="1.3", job_name="train"):
        yield GlobalHydra.instance().hydra


def compose(overrides: Sequence[str], hydra_config: bool = False):
    """The DictConfig `ganctl train OVERRIDES` composes, with Hydra's own node when asked."""
    from hydra import compose as hydra_compose

    with hydra_session():
        return hydra_compose("train", overrides=list(overrides), return_hydra_config=hydra_config)


def compose_run_config(overrides: Sequence[str] = ()):
    """The typed RunConfig that `ganctl train OVERRIDES` would run (for tests and benchmarks too)."""
    from ganctl.config import to_run_config

    return to_run_config(compose(overrides))


def split_hydra(composed) -> tuple[object, str | None]:
    """A copy of the task config without its `hydra` node, and the run folder Hydra would create
    (None if it cannot be known before Hydra's job starts)."""
    import copy

    from omegaconf import OmegaConf, open_dict, read_write

    try:
        run_dir = OmegaConf.select(composed, "hydra.run.dir", throw_on_resolution_failure=True)
    except Exception:  # an interpolation only Hydra's job can resolve (hydra.job.*)
        run_dir = None
    task = copy.deepcopy(composed)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task, None if run_dir is None else str(run_dir)
