"""The Starlette application: GraphQL over HTTP and WebSocket, health, lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from . import db
from .actions.connections import Sources
from .api.context import AppState, Context, resolve_scope
from .api.schema import schema
from .auth import TokenVerifier
from .clock import Clock
from .config import Settings, get_settings
from .errors import Unauthenticated
from .events import EventHub
from .providers.registry import polled_providers
from .runtime import tune_garbage_collector
from .sandbox_bank import consent_page
from .secrets import SettingsCipher, encryption_key
from .workers.scheduler import Scheduler

__all__ = ["create_app"]

log = logging.getLogger(__name__)


class GraphQLApp(GraphQL[Context, None]):
    def __init__(self, state_ref: dict[str, AppState], settings: Settings) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql else None,
            allow_queries_via_get=False,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            max_subscriptions_per_connection=20,
        )
        self._state_ref = state_ref

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        state = self._state_ref["state"]
        if isinstance(request, WebSocket):
            # Sockets authenticate in on_ws_connect, from connection_init.
            return Context(state=state, authorization=None, request=request, response=response)
        return Context(
            state=state,
            authorization=request.headers.get("authorization"),
            request=request,
            response=response,
        )

    async def on_ws_connect(self, context: Context) -> None:
        """Authenticate the socket once, from the connection_init payload."""
        params = context.connection_params or {}
        if not isinstance(params, dict):
            raise ConnectionRejectionError({"message": "connection_init payload must be an object"})
        header = next((v for k, v in params.items() if k.lower() == "authorization"), None)
        try:
            context._scope = await resolve_scope(self._state_ref["state"], header)
        except Unauthenticated as exc:
            raise ConnectionRejectionError({"message": exc.message, "code": exc.code}) from None


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> Starlette:
    settings = settings or get_settings()
    clock = clock or Clock()
    state_ref: dict[str, AppState] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = await db.connect_pool(settings)
        async with pool.acquire() as conn:
            if await db.pending_migrations(conn):
                await db.migrate(conn)
        sources = Sources(
            cipher=SettingsCipher(encryption_key(settings)),
            providers=polled_providers(settings),
            clock=clock,
        )
        # Every process can run a sync on request (syncNow); only with workers on does it
        # also poll in the background.
        scheduler = Scheduler(pool, settings, sources.cipher, dict(sources.providers), clock)
        # Live events: one LISTEN connection and fan-out per process.
        hub = app.state.hub = EventHub(pool, db.database_url(settings))
        await hub.start()
        state_ref["state"] = AppState(
            settings=settings,
            pool=pool,
            verifier=TokenVerifier(settings),
            sources=sources,
            scheduler=scheduler,
            hub=hub,
        )
        if settings.workers:
            await scheduler.start()
        tune_garbage_collector()
        app.state.draining = False
        try:
            yield
        finally:
            # From here /readyz answers 503; in-flight syncs finish and leases are given back.
            app.state.draining = True
            await scheduler.stop()
            await hub.stop()  # ends subscriptions (they get a resume cursor) before the pool
            await pool.close()

    graphql_app = GraphQLApp(state_ref, settings)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        state = state_ref.get("state")
        if state is None or getattr(request.app.state, "draining", True):
            return JSONResponse({"status": "starting or draining"}, status_code=503)
        try:
            async with state.pool.acquire(timeout=2) as conn:
                pending = await db.pending_migrations(conn)
        except Exception:  # any database failure means: do not send traffic here
            log.warning("readiness check: database unreachable", exc_info=True)
            return JSONResponse({"status": "database unreachable"}, status_code=503)
        if pending:
            return JSONResponse(
                {"status": "migrations pending", "pending": pending}, status_code=503
            )
        return JSONResponse({"status": "ready"})

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/graphql", graphql_app),
            WebSocketRoute("/graphql", graphql_app),
            *(
                [Route("/sandbox-bank/consent/{reference}", consent_page)]
                if settings.sandbox
                else []
            ),
        ],
        lifespan=lifespan,
        max_body_size=settings.max_upload_bytes,
    )
