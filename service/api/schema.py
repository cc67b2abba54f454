"""The schema: types, limits, caches and how errors are reported."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Iterator

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.types import Info

from ..config import get_settings
from ..errors import ServiceError
from ..telemetry import OperationTracing
from .enums import PaymentEventType
from .events import PaymentEvent
from .mutation import Mutation
from .permissions import BANK_DATA
from .query import Query

__all__ = ["schema"]

log = logging.getLogger(__name__)


class ErrorCodes(SchemaExtension):
    """Give every error an `extensions.code`; hide the text of unexpected ones.

    Service errors keep their message and code; anything else is logged in full and reported
    as INTERNAL, so a stack detail never reaches a client.
    """

    def on_execute(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        context = self.execution_context.context
        extra = getattr(context, "extra_errors", None)
        if result is None:
            return
        if extra:
            result.errors = [*(result.errors or []), *extra]
            extra.clear()  # a socket's context lives on; the next operation starts clean
        if result.errors:
            result.errors = [_with_code(e) for e in result.errors]

    def on_validate(self) -> Iterator[None]:
        yield
        errors = self.execution_context.pre_execution_errors
        if errors:
            for error in errors:
                if not (error.extensions or {}).get("code"):
                    error.extensions = {**(error.extensions or {}), "code": "BAD_USER_INPUT"}


def _with_code(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if isinstance(original, ServiceError):
        return GraphQLError(
            original.message,
            nodes=error.nodes,
            path=error.path,
            extensions={"code": original.code, **original.extensions},
        )
    if (error.extensions or {}).get("code"):
        return error
    if original is None or error.path is None or isinstance(original, GraphQLError):
        # Variable coercion and similar request problems the caller can fix.
        error.extensions = {**(error.extensions or {}), "code": "BAD_USER_INPUT"}
        return error
    log.error("unexpected error at %s", error.path, exc_info=original)
    return GraphQLError(
        "internal error; it has been logged",
        nodes=error.nodes,
        path=error.path,
        extensions={"code": "INTERNAL"},
    )


@strawberry.type
class Subscription:
    @strawberry.subscription(
        extensions=BANK_DATA(),
        description=(
            "Live stream of the tenant's events; with `after`, first replays everything after "
            "that cursor, with no gap and no duplicate."
        ),
    )
    async def payment_events(
        self, info: Info, after: str | None = None, types: list[PaymentEventType] | None = None
    ) -> AsyncGenerator[PaymentEvent, None]:
        from .subscriptions import payment_events

        async for event in payment_events(info, after, types):
            yield event


def _extensions() -> list[object]:
    settings = get_settings()
    return [
        OperationTracing,
        ErrorCodes,
        ParserCache,
        ValidationCache,
        lambda: QueryDepthLimiter(max_depth=settings.max_query_depth),
        lambda: MaxAliasesLimiter(max_alias_count=30),
        lambda: MaxTokensLimiter(max_token_count=5000),
    ]


schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=_extensions(),  # type: ignore[arg-type]
)
