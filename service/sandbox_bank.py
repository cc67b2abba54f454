"""The sandbox bank's consent page: where a user lands after `connectBankSync` or
`renewConsent` of a SANDBOX connection with `{"consent": true}`. It stands in for a bank's
strong-authentication screen; the user goes back to the app and calls `completeConsent`."""

from __future__ import annotations

from html import escape
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

__all__ = ["consent_page"]


async def consent_page(request: Request) -> Response:
    reference = escape(request.path_params["reference"])
    back = request.query_params.get("redirect_uri", "")
    # Only absolute http(s) links go back; anything else (javascript:, data:) is dropped.
    link = ""
    if urlsplit(back).scheme in ("http", "https") and urlsplit(back).netloc:
        link = f'<p><a href="{escape(back, quote=True)}">Back to the application</a></p>'
    return HTMLResponse(
        "<!doctype html><title>Sandbox bank</title>"
        "<h1>Sandbox bank</h1>"
        f"<p>Access to account information was authorized (consent {reference}).</p>"
        "<p>Return to the application and complete the connection.</p>"
        f"{link}"
    )
