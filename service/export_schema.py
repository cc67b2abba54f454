"""Print the GraphQL schema as SDL: `python -m service.export_schema > schema.graphql`."""

from __future__ import annotations

from .api.schema import schema

if __name__ == "__main__":
    print(schema.as_str())
