"""Tracing: one span per operation (not per field), with the error codes, no query text."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from .conftest import GQL, MakeTenant

_exporter = InMemorySpanExporter()


def _install() -> None:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)


async def test_one_span_per_operation(gql: GQL, make_tenant: MakeTenant) -> None:
    _install()
    t = await make_tenant()
    _exporter.clear()
    await gql(
        "query Listing { documents(first: 5) { edges { node { number total partner { name } } } } viewer { subject } }",
        token=t.token(),
    )
    await gql("query Denied { transactions { totalCount } }", token=t.token("INVOICER"))
    spans = [s for s in _exporter.get_finished_spans() if s.name.startswith("graphql")]
    assert [s.name for s in spans] == ["graphql query Listing", "graphql query Denied"]
    assert spans[1].attributes["graphql.error_codes"] == ("FORBIDDEN",)
    assert all("query" not in (s.attributes or {}) for s in spans)
