"""The send-rate limit: SMTP_RATE_LIMIT messages a minute, shared by every process and worker.

A Prefect global concurrency limit with slot decay holds the pace: slots taken decay at
`decay` a second, and at most `burst` can be taken at once. Any 60 s window can then hold up to
burst + 60 * decay messages (the server's own arithmetic), so decay is set to keep that sum a
chunk below the limit: a chunk granted just before a window may arrive in it. Slots are taken once per chunk of messages, never per message: an acquire is a round
trip to the Prefect server (tens of milliseconds, seconds at worst). Strict mode: a limit that
is missing on the server is an error, never a quiet send without a limit.
"""

from __future__ import annotations

from dataclasses import dataclass

LIMIT_NAME = "tutormax-smtp-send"


class RateLimitError(RuntimeError):
    """SMTP_RATE_LIMIT is set but its Prefect limit cannot be taken from (missing, say): nothing goes unthrottled."""


@dataclass(frozen=True)
class SendRate:
    """How SMTP_RATE_LIMIT messages a minute become a Prefect limit, and how much each acquire takes."""

    per_minute: int

    @property
    def chunk(self) -> int:
        """Messages sent per acquire: about a second's worth, at most 20, at least 1."""
        # the chunk trades waits against accuracy: each refused acquire restarts the server's decay
        # clock and loses a fraction of a slot, so small chunks (many refusals) fall short of the
        # limit, big ones wait long and unevenly for their slots, and urgent mail waits for the
        # acquire in progress. Two runners at 3,000 a minute: 20 kept 0.91 of the limit with a p99
        # wait of 3.6 s; 10 kept 0.88; 50, 0.96 with a p99 of 8.7 s
        return max(1, min(20, self.per_minute // 60))

    @property
    def burst(self) -> int:
        """The limit's slots: two chunks, so one runner's next chunk never waits for its last to decay."""
        return max(1, min(2 * self.chunk, self.per_minute // 2))

    @property
    def decay(self) -> float:
        """Slots freed a second, so that burst + 60 * decay, and a chunk still on the wire, is the limit."""
        # slots are counted when granted, messages when the server takes them: a chunk granted just
        # before a 60 s window can arrive inside it, so the window keeps a chunk's room for it
        return max(self.per_minute - self.burst - self.chunk, 1) / 60


def apply(per_minute: int | None) -> str:
    """Create or update the limit on the Prefect server from the setting; unset deactivates it. Says what it did."""
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        if per_minute is None:
            try:
                client.update_global_concurrency_limit(LIMIT_NAME, GlobalConcurrencyLimitUpdate(active=False))
            except ObjectNotFound:
                return "SMTP_RATE_LIMIT is not set: no send-rate limit"
            return f"SMTP_RATE_LIMIT is not set: the limit {LIMIT_NAME} is deactivated"
        rate = SendRate(per_minute)
        client.upsert_global_concurrency_limit_by_name(LIMIT_NAME, rate.burst, rate.decay)
        client.update_global_concurrency_limit(LIMIT_NAME, GlobalConcurrencyLimitUpdate(active=True))
    return (f"{LIMIT_NAME}: {per_minute} messages a minute (burst {rate.burst}, {rate.decay:.3f} slots freed a "
            f"second, {rate.chunk} messages per acquire)")


def acquire(rate: SendRate, messages: int) -> None:
    """Wait for slots to send this many messages (never more than the limit's burst at once)."""
    # the error strict mode raises is not exported anywhere public in Prefect 3.9
    from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
    from prefect.concurrency.sync import rate_limit

    try:
        rate_limit(LIMIT_NAME, occupy=min(messages, rate.burst), strict=True)
    except ConcurrencySlotAcquisitionError as exc:
        raise RateLimitError(f"SMTP_RATE_LIMIT is set, but the send-rate limit {LIMIT_NAME!r} cannot be taken from "
                             f"({exc}); `tutormax limits apply` creates it from the settings") from None
