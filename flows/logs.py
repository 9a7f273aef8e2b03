"""Prefect's log records of expected bad input, kept to their one-line message; known library warnings
that say nothing to a castline user, silenced.

Installed when flows/library.py is imported, so it holds wherever the flows run: the CLI, a served
deployment's run process, a Dask worker. CASTLINE_DEBUG=1 (`castline --debug`) leaves the records alone.
"""
from __future__ import annotations

import logging
import os
import warnings

# torch deprecates TorchScript loading (torch.jit.load); models saved that way still load.
QUIET_WARNINGS = ((FutureWarning, r"`torch\.jit\.load` is"),)

DEBUG_ENV = "CASTLINE_DEBUG"


class OneLineErrors(logging.Filter):
    """Drops Prefect's "Task run failed with ..." record when the failure is expected bad input (e.g. a text
    file named .mp4, a model that is not on disk): it repeats the "Finished in state Failed(<reason>)" line that follows, with a
    traceback, in the terminal and in the UI log. A task that returns a Failed state gets the same record
    with exc_info=True outside any exception, printed as 'NoneType: None'."""

    def __init__(self, expected: tuple[type[BaseException], ...]):
        super().__init__()
        self.expected = expected

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and (record.exc_info[1] is None
                                         or isinstance(record.exc_info[1], self.expected)))


def quiet_known_warnings() -> None:
    for category, message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def keep_expected_errors_short(expected: tuple[type[BaseException], ...]) -> None:
    quiet_known_warnings()
    if os.environ.get(DEBUG_ENV) == "1":
        return
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(OneLineErrors(expected))
