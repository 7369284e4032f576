"""Data parallel training on PyTorch's distributed package: the rank's view, spawning, torchrun."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ganctl.errors import GanctlError


@dataclass(frozen=True)
class Rank:
    """This process's place among `world` replicas; world 1 means plain single-process training."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool | int, device: torch.device) -> int:
        """The largest value of `flag` over all ranks (0 when none set it): one small all-reduce."""
        if self.world == 1:
            return int(flag)
        value = torch.tensor([int(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return int(value.item())

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def replicas_agree(self, modules, device: torch.device) -> bool:
        """Every rank holds the same weights (a debug check: one all-gather of checksums)."""
        if self.world == 1:
            return True
        mine = torch.stack([p.detach().double().sum() for m in modules for p in m.parameters()]).to(device)
        gathered = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(gathered, mine)
        return all(torch.equal(gathered[0], g) for g in gathered[1:])


def from_env(uses_cuda: bool) -> Rank | None:
    """The rank torchrun (or SLURM via torchrun) set up in the environment, initialised; else None.

    NCCL only when the run trains on CUDA: trainer.device=cpu on a GPU machine needs gloo.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
        return None
    if not dist.is_initialized():
        dist.init_process_group("nccl" if uses_cuda else "gloo")
    return Rank(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(local_rank: int, world: int, port: int, backend: str, result_path: str, fn, args) -> None:
    import threading

    from tqdm import tqdm

    # tqdm's default lock holds multiprocessing semaphores, which os._exit below would leak
    # (a warning from the resource tracker); one bar per process needs only a thread lock.
    tqdm.set_lock(threading.RLock())
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=local_rank, world_size=world)
    outcome = None
    try:
        outcome = ("ok", fn(Rank(local_rank, world, local_rank), *args))
    except GanctlError as err:
        outcome = ("error", err.prefix, err.lines, err.exit_code)
    finally:
        dist.destroy_process_group()
    if local_rank == 0:
        with open(result_path, "wb") as f:
            pickle.dump(outcome, f)
    # Leave without the interpreter's exit: about 1 worker in 8 aborted there, after
    # destroy_process_group ("terminate called without an active exception": a native thread
    # still joinable at static destruction), failing a run that had finished. The result is in a
    # file, not a multiprocessing queue, because os._exit skips the queue's clean-up.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def spawn(fn, world: int, uses_cuda: bool, *args):
    """Run fn(rank, *args) in `world` processes (gloo on CPU, NCCL on CUDA); rank 0's result."""
    import tempfile

    import torch.multiprocessing as mp

    backend = "nccl" if uses_cuda else "gloo"
    # Ctrl-C / SIGTERM reach every process of the group: the workers checkpoint and stop together,
    # while this parent waits for them instead of killing them.
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    with tempfile.TemporaryDirectory(prefix="ganctl_ddp_") as tmp:
        result_path = os.path.join(tmp, "rank0.pkl")
        try:
            mp.start_processes(
                _worker, args=(world, _free_port(), backend, result_path, fn, args), nprocs=world, start_method="spawn"
            )
        except (mp.ProcessRaisedException, mp.ProcessExitedException):
            # When rank 0 stopped on a ganctl error (say, a checkpoint it alone writes could not be
            # saved), the others fail in their next collective: report rank 0's error, not theirs.
            if not os.path.exists(result_path):
                raise
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        with open(result_path, "rb") as f:
            outcome = pickle.load(f)
    if outcome[0] == "error":
        _, prefix, lines, code = outcome
        err = GanctlError(*lines)
        err.exit_code, err.prefix = code, prefix
        raise err
    return outcome[1]
