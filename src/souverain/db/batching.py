"""Ids in batches for `IN (...)`: what loads the rows related to a whole page at once.

A page of N rows costs one query per relation, not one per row; the batches only keep
a single statement under every database's bound-parameter limit. No queries here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

# Well under SQLite's 32,766 and PostgreSQL's 65,535 parameters per statement.
BATCH_SIZE = 500


def id_batches(ids: Iterable[str], size: int = BATCH_SIZE) -> Iterator[list[str]]:
    """The distinct ids, in first-seen order, `size` at a time; nothing for no ids."""
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), size):
        yield unique[start : start + size]
