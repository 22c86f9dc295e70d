"""Retry conditions for I/O tasks: retry what a later attempt can fix, nothing else."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.exc import OperationalError


def retry_on(*transient: type[BaseException]) -> Callable[..., bool]:
    """A Prefect retry_condition_fn that retries only on the given exception types."""

    def condition(task, task_run, state) -> bool:
        try:
            state.result()
        except transient:
            return True
        except Exception:
            return False
        return False

    return condition


# the database went away (restart, failover, network): a later attempt may reach it
DATABASE_DOWN = (OperationalError,)
