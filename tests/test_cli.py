"""The command line as a user runs it: serve, and tenant/token beside the running server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

RECON = [sys.executable, "-m", "service.cli"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cli_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env["RECON_DATA_DIR"] = str(tmp_path / "data")
    env["RECON_PORT"] = str(_port())
    if os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = database_url
    else:
        env.pop("DATABASE_URL", None)  # the CLI starts its own embedded server in its data dir
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RECON, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def served(cli_env: dict[str, str]) -> Iterator[str]:
    proc = subprocess.Popen(
        [*RECON, "serve"], env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{cli_env['RECON_PORT']}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.2)
    else:
        pytest.fail("recon serve did not become ready")
    yield url
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells why.
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    output = proc.stdout.read() if proc.stdout else ""
    assert "Application shutdown complete" in output, output


def test_tenant_and_token_work_beside_a_running_server(
    cli_env: dict[str, str], served: str
) -> None:
    assert httpx.get(f"{served}/healthz").json() == {"status": "ok"}
    slug = f"cli-{os.getpid()}"
    created = run(cli_env, "tenant", "create", slug, "--name", "CLI Kft.", "--plan", "PROFI")
    assert created.returncode == 0, created.stderr
    again = run(cli_env, "tenant", "create", slug)
    assert again.returncode == 1 and "already exists" in again.stderr
    token = run(cli_env, "token", "--tenant", slug, "--role", "ACCOUNTANT", "--sub", "anna")
    assert token.returncode == 0, token.stderr
    body = httpx.post(
        f"{served}/graphql",
        json={"query": "{ viewer { subject role tenant { slug name plan } } }"},
        headers={"Authorization": f"Bearer {token.stdout.strip()}"},
    ).json()
    assert body["data"]["viewer"] == {
        "subject": "anna",
        "role": "ACCOUNTANT",
        "tenant": {"slug": slug, "name": "CLI Kft.", "plan": "PROFI"},
    }
    missing = run(cli_env, "token", "--tenant", "nope", "--role", "OWNER")
    assert missing.returncode == 1 and "no tenant" in missing.stderr
    # GraphiQL answers a browser's GET.
    page = httpx.get(f"{served}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()


def test_demo_seeds_idempotently_and_prints_a_working_token(cli_env: dict[str, str]) -> None:
    first = run(cli_env, "demo", "--no-serve")
    assert first.returncode == 0, first.stderr
    second = run(cli_env, "demo", "--no-serve")
    assert second.returncode == 0, second.stderr
    token = next(
        line.split(":", 1)[1].strip()
        for line in second.stdout.splitlines()
        if "Token (OWNER)" in line
    )
    migrate = run(cli_env, "migrate")
    assert migrate.returncode == 0 and "none pending" in migrate.stdout
    check = subprocess.run(
        [sys.executable, "-c", _COUNT_DEMO, token],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    counts = check.stdout.split()
    assert counts == ["58", "2", "PUSH,SANDBOX", "HUF,CZK"], counts


# Queries the demo through the real app in-process, as the token's tenant sees it.
_COUNT_DEMO = """
import asyncio, sys, httpx
from service.app import create_app
from service.config import Settings

async def main():
    app = create_app(Settings())
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            q = "{ documents { totalCount edges { node { currency } } } connections { provider } }"
            r = await c.post("/graphql", json={"query": q}, headers={"Authorization": "Bearer " + sys.argv[1]})
            d = r.json()["data"]
            currencies = ",".join(dict.fromkeys(e["node"]["currency"] for e in d["documents"]["edges"]))
            print(d["documents"]["totalCount"], len(d["connections"]),
                  ",".join(sorted(c["provider"] for c in d["connections"])),
                  ",".join(sorted(set(currencies.split(",")), reverse=True)))

asyncio.run(main())
"""
