"""Command-line entry point: `train` goes to Hydra (ganctl.launch), the other subcommands to argparse."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Sequence

from ganctl.errors import ConfigError, GanctlError

# Where tests, benchmarks and the wheel check look for them; each lives with its job in ganctl.launch.
from ganctl.launch.compose import compose_run_config, conf_dir  # noqa: F401
from ganctl.launch.folders import holds_run  # noqa: F401
from ganctl.launch.resume import resume_config  # noqa: F401
from ganctl.launch.task import fail, final_metric  # noqa: F401

USAGE = """\
usage: ganctl <command> [args]

commands:
  train        train a GAN from Hydra configs    ganctl train +experiment=mnist_bce
  sample       draw samples from a checkpoint    ganctl sample outputs/.../checkpoints/last.pt -o s.png
  interpolate  walk the latent space             ganctl interpolate RUN_DIR -o walk.gif
  project      find the latents of real images   ganctl project RUN_DIR a.png b.jpg -o projected/
  eval         score samples against real data   ganctl eval RUN_DIR
  report       a run's pictures, a sweep's table ganctl report RUN_DIR (or multirun/DATE/TIME)
  inspect      show what a checkpoint holds      ganctl inspect RUN_DIR [--json]
  export       G as a TorchScript or ONNX file   ganctl export RUN_DIR --format onnx -o G.onnx
  serve        a local page to explore G         ganctl serve RUN_DIR [--port 8000]

`ganctl train --help` lists the config groups and options; `ganctl COMMAND --help` the others;
`ganctl --version` the version.
"""


# Each subcommand but train: its module in ganctl.commands, imported only when asked for, so
# `ganctl sample` never pays for onnx or http.server.
COMMANDS = {
    "sample": "sample",
    "interpolate": "interpolate",
    "project": "project",
    "eval": "evaluate",
    "report": "report",
    "inspect": "inspect",
    "export": "export",
    "serve": "serve",
}


def _leave_process_group() -> None:
    """Under torchrun, leave the process group and exit at once once the run is written.

    About one torchrun worker in eight aborted in the interpreter's own exit after finishing
    (a native thread of the process group still joinable at static destruction): torchrun then
    reports the whole run failed. Spawned workers (trainer.devices=N) leave the same way.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _exit_now() -> None:
    """End a finished command without the interpreter's own teardown.

    With torch loaded, Python's exit (tearing down thousands of modules and torch's static state)
    took 0.6 s on a 2-core Xeon, more than half of what a 1-step `ganctl train` adds to
    PyTorch's floor (docs/BENCHMARKS.md). By now every file ganctl writes is complete (atomic
    writes, closed logs), so only the log handlers and the standard streams are flushed first.
    """
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to deliver
            pass
    os._exit(0)


def _may_exit_now(args: list[str]) -> bool:
    """A command line run that started no helper processes: a sweep's launcher (joblib, submitit)
    and torch.compile's compile workers clean up in their exit handlers, so those exit normally."""
    if any(a in ("-m", "--multirun") for a in args):
        return False
    if "torch._inductor.compile_worker.subproc_pool" in sys.modules:
        return False
    multiprocessing = sys.modules.get("multiprocessing")  # unimported: it started no process
    return multiprocessing is None or not multiprocessing.active_children()


def main(argv: Sequence[str] | None = None) -> None:
    """`ganctl ARGS`; called with no argv (the console script, python -m ganctl) a finished
    command exits at once, while a caller that passes argv gets control back."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return
    if args[0] in ("-V", "--version"):
        from ganctl.version import __version__

        print(f"ganctl {__version__}")
        return
    if args[0] in ("-sc", "--shell-completion") or args[0].startswith(("-sc=", "--shell-completion=")):
        args = ["train", *args]  # Hydra's completion lives on the train command
    command, rest = args[0], args[1:]
    try:
        if command == "train":
            from ganctl.launch.train import train_main

            train_main(rest)
            _leave_process_group()
        elif command in COMMANDS:
            importlib.import_module(f"ganctl.commands.{COMMANDS[command]}").main(rest)
        else:
            raise ConfigError(f"unknown command {command!r}; accepted: {', '.join(['train', *COMMANDS])}")
    except GanctlError as err:
        fail(err)
    if argv is None and _may_exit_now(args):
        _exit_now()


if __name__ == "__main__":
    main()
