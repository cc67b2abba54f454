"""The live event subscription: replay after a cursor, then live, from this process's hub."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from graphql import GraphQLError
from graphql.execution.executor import Executor
from strawberry.types import Info

from ..events import HubStopped, SubscriberOverrun
from ..store.pagination import InvalidCursor, decode_cursor, encode_cursor
from .enums import PaymentEventType
from .events import EventLoaders, PaymentEvent

__all__ = ["payment_events"]

_original_per_event_executor = Executor.build_per_event_executor


def _per_event_executor(self: Executor[Any], payload: Any) -> Executor[Any]:
    """graphql-core 3.3.2 copies the subscription's executor for each event but shares its
    subfield memo, keyed by the identity of lists made anew for every event: the memo gains
    entries on every event for as long as the subscription lives (a leak per subscriber, and
    full garbage collections that grew to 300 ms within a minute of streaming). A memo of the
    event's own keeps its purpose (lists within one event) and lets it go with the event."""
    executor = _original_per_event_executor(self, payload)
    executor._relevant_sub_fields = {}
    return executor


# Installed when the subscription module loads, i.e. before the first event of the first
# subscription is executed.
Executor.build_per_event_executor = _per_event_executor  # type: ignore[method-assign]


log = logging.getLogger(__name__)


def _error(message: str, code: str, **extensions: Any) -> GraphQLError:
    # Raised from inside the stream, errors bypass the schema's ErrorCodes extension, so they
    # carry their code themselves.
    return GraphQLError(message, extensions={"code": code, **extensions})


def _resume(last_id: int | None, after: str | None) -> str | None:
    return encode_cursor(last_id) if last_id is not None else after


def _again(resume: str | None) -> str:
    return f"subscribe again with after: {resume!r}" if resume else "subscribe again"


async def payment_events(
    info: Info, after: str | None, types: list[PaymentEventType] | None
) -> AsyncGenerator[PaymentEvent, None]:
    """Events of the caller's tenant after `after` (or from now on), then live."""
    scope = await info.context.scope()
    scope.require_bank_data()  # the field's permission already checked; this is the backstop
    try:
        position = decode_cursor(after)
    except InvalidCursor as exc:
        raise _error(str(exc), "BAD_USER_INPUT") from None
    hub = info.context.state.hub
    if hub is None or not hub.running:
        raise _error(
            "the live event stream is not running here; retry, or page through `events`",
            "UNAVAILABLE",
            after=after,
        )
    pool = info.context.pool
    context_loaders = info.context._loaders
    stream = hub.stream(scope.tenant_id, position, [t.value for t in types or []])
    delivered: int | None = None
    try:
        async with aclosing(stream):
            async for delivery in stream:
                if scope.expires_at <= time.time():
                    # The socket outlives its token: nothing more goes out on it.
                    resume = _resume(delivered, after)
                    raise _error(
                        f"the token has expired; reconnect with a new one and {_again(resume)}",
                        "UNAUTHENTICATED",
                        after=resume,
                    )
                # The socket's context lives as long as the socket: without this its loaders
                # would keep serving rows as they were at the first event.
                context_loaders.clear()
                loaders = EventLoaders.shared(delivery.memo, pool, scope.tenant_id)
                yield PaymentEvent.from_row(delivery.row, encode_cursor(delivery.id), loaders)
                delivered = delivery.id
    except GraphQLError:
        raise
    except SubscriberOverrun as exc:
        resume = _resume(exc.last_id, after)
        raise _error(
            f"this subscription fell more than {hub.queue_size} events behind and was ended;"
            f" {_again(resume)} to continue without a gap",
            "RATE_LIMITED",
            after=resume,
        ) from None
    except HubStopped as exc:
        resume = _resume(exc.last_id, after)
        raise _error(
            f"the server is shutting down; {_again(resume)}",
            "UNAVAILABLE",
            after=resume,
        ) from None
    except Exception:
        # Errors raised inside a stream bypass the schema's masking: never send their text.
        resume = _resume(delivered, after)
        log.exception("paymentEvents stream failed")
        raise _error(
            f"internal error; it has been logged; {_again(resume)}", "INTERNAL", after=resume
        ) from None
