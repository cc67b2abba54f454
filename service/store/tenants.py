"""Tenants."""

from __future__ import annotations

from asyncpg import Connection, Record

__all__ = ["by_slug", "create", "upsert"]


async def by_slug(conn: Connection, slug: str) -> Record | None:
    return await conn.fetchrow("select * from tenants where slug = $1", slug)


async def create(conn: Connection, slug: str, name: str, plan: str) -> Record | None:
    return await conn.fetchrow(
        "insert into tenants (slug, name, plan) values ($1, $2, $3) returning *", slug, name, plan
    )


async def upsert(conn: Connection, slug: str, name: str, plan: str) -> Record | None:
    return await conn.fetchrow(
        "insert into tenants (slug, name, plan) values ($1, $2, $3)"
        " on conflict (slug) do update set name = excluded.name, plan = excluded.plan"
        " returning *",
        slug,
        name,
        plan,
    )
