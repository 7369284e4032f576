"""Stop requests: SIGINT/SIGTERM/SIGUSR2 end the run at the next step boundary with a checkpoint."""

from __future__ import annotations

import signal
import sys
import threading


class StopRequest:
    """SIGINT/SIGTERM/SIGUSR2 ask the loop to finish its step and checkpoint; a second SIGINT aborts.

    SIGUSR2 is what SLURM sends (through submitit) before a time limit. A handler installed before
    ours (submitit's requeue) is called after the checkpoint is written.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: no checkpoint, stop now
        self.signum = signum
        print(
            f"\nganctl: {signal.Signals(signum).name} received; finishing the step and saving a checkpoint "
            "(Ctrl-C again to abort at once)",
            file=sys.stderr,
        )

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def chained(self, signum: int):
        """The Python handler that was there before ours for `signum`, if any worth calling."""
        previous = self._previous.get(signum)
        if callable(previous) and previous is not signal.default_int_handler:
            return previous
        return None

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
