"""Which sources this build can poll."""

from __future__ import annotations

from ..config import Settings
from .base import Provider
from .sandbox import SandboxBank

__all__ = ["polled_providers"]


def polled_providers(settings: Settings) -> dict[str, Provider]:
    """Sources the scheduler polls, by Provider enum name. PUSH is not polled: partner
    systems deliver its payments through ingestTransactions."""
    public = settings.public_url or f"http://{settings.host}:{settings.port}"
    sources: dict[str, Provider] = {}
    if settings.sandbox:  # the simulated bank is for laptops and demos; production turns it off
        sources["SANDBOX"] = SandboxBank(public)
    return sources
