"""What a batch use case hands back: the rows that landed and the records that did not."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..domain.records import RecordProblem

__all__ = ["BatchResult"]


@dataclass(slots=True)
class BatchResult:
    rows: list[Any] = field(default_factory=list)
    problems: list[RecordProblem] = field(default_factory=list)
    inserted: int = 0
    duplicates: int = 0
