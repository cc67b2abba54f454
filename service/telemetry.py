"""Tracing: one span per GraphQL operation and per sync, not per field.

strawberry's stock OpenTelemetry extension wraps every field resolution in a coroutine, which
made large lists several times slower; an operation-level span costs nothing per field.
Spans go nowhere unless a tracer provider is installed: `RECON_TRACING=console` installs one
that prints them, and a deployment may install its own exporter before start.
"""

from __future__ import annotations

from collections.abc import Iterator

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from strawberry.extensions import SchemaExtension

__all__ = ["OperationTracing", "setup_tracing", "tracer"]

tracer = trace.get_tracer("recon")


def setup_tracing(mode: str | None) -> None:
    if mode == "console":
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(provider)


class OperationTracing(SchemaExtension):
    """A span per operation, named by its type and name; the query text is left out (it
    may carry personal data in literals)."""

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        with tracer.start_as_current_span("graphql") as span:
            yield
            span.update_name(
                f"graphql {context.operation_type.value} {context.operation_name or ''}".strip()
            )
            result = context.result
            if result is not None and result.errors:
                span.set_attribute("graphql.errors", len(result.errors))
                codes = sorted({str((e.extensions or {}).get("code")) for e in result.errors})
                span.set_attribute("graphql.error_codes", codes)
