"""Shared fixtures: a real PostgreSQL, the service on a loopback port, tenants and tokens.

With DATABASE_URL set, a fresh database is created on that server for the session; without
it, an embedded PostgreSQL starts in a temporary directory. Tests isolate themselves by
creating their own tenants, so nothing needs truncating between them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from service import db
from service.actions.scope import Scope
from service.app import create_app
from service.auth import Plan, Role, issue_token
from service.config import Settings
from service.store import tenants as tenants_store


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recon-data")


@pytest.fixture(scope="session")
def database_url(data_dir: Path) -> Iterator[str]:
    base = os.environ.get("DATABASE_URL")
    if not base:
        yield db.database_url(Settings(database_url=None, data_dir=data_dir))
        return
    name = f"recon_test_{uuid.uuid4().hex[:10]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'create database "{name}"'))
    yield _with_database(base, name)
    asyncio.run(run(f'drop database if exists "{name}" with (force)'))


def _with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def settings(database_url: str, data_dir: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        jwt_secret="test-secret-" + "x" * 40,
        max_page_size=100,
        max_batch_size=500,
        # Background polling off: tests that poll drive their own schedulers and clocks.
        workers=False,
    )


@pytest.fixture(scope="session")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    p = await db.connect_pool(settings)
    async with p.acquire() as conn:
        await db.migrate(conn)
    yield p
    await p.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    settings: Settings

    @property
    def graphql(self) -> str:
        return f"{self.url}/graphql"

    @property
    def ws(self) -> str:
        return self.graphql.replace("http://", "ws://")


@pytest.fixture(scope="session")
async def server(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Server]:
    """The real application under uvicorn on a loopback port, in this event loop."""
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    for _ in range(200):
        if srv.started:
            break
        await asyncio.sleep(0.05)
    assert srv.started, "the service did not start"
    yield Server(url=f"http://127.0.0.1:{port}", settings=settings)
    srv.should_exit = True
    await task


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@dataclass
class TenantHandle:
    id: int
    slug: str
    settings: Settings

    def scope(self, role: Role | str = Role.OWNER) -> Scope:
        """The caller's scope as the API would build it, for tests that call use cases."""
        return Scope(
            tenant_id=self.id,
            tenant_slug=self.slug,
            tenant_name=self.slug,
            plan=Plan.PROFI,
            subject="test",
            role=Role(role),
        )

    def token(self, role: Role | str = Role.OWNER, sub: str | None = None) -> str:
        role = Role(role)
        return issue_token(
            self.settings, self.slug, role, sub or f"{role.value.lower()}@{self.slug}"
        )


MakeTenant = Callable[..., Awaitable[TenantHandle]]


@pytest.fixture
async def make_tenant(pool: asyncpg.Pool, settings: Settings) -> MakeTenant:
    async def make(plan: str = "PROFI", slug: str | None = None) -> TenantHandle:
        slug = slug or f"t-{uuid.uuid4().hex[:12]}"
        async with pool.acquire() as conn:
            row = await tenants_store.create(conn, slug, f"Tenant {slug}", plan)
        return TenantHandle(id=row["id"], slug=slug, settings=settings)

    return make


GQL = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def gql(server: Server, http: httpx.AsyncClient) -> GQL:
    """POST a GraphQL operation; returns the decoded response (data and errors)."""

    async def call(
        query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await http.post(
            server.graphql, json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code in (200, 400), response.text
        body: dict[str, Any] = response.json()
        return body

    return call


def codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]


@pytest.fixture
async def push_connection(gql: GQL) -> Callable[[TenantHandle], Awaitable[str]]:
    async def make(tenant: TenantHandle, **extra: Any) -> str:
        body = await gql(
            "mutation($i: ConnectBankSyncInput!) { connectBankSync(input: $i) { connection { id } } }",
            {"i": {"provider": "PUSH", "name": "push", **extra}},
            tenant.token(),
        )
        assert not body.get("errors"), body
        return str(body["data"]["connectBankSync"]["connection"]["id"])

    return make
