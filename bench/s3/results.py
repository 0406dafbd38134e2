"""Print the S3 bench's table: one row per measurement, a column per server, then
Souverain's ratio to each peer and the target the row is held to."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from target import MOTO, NGINX, SOUVERAIN, SWIFT

# Above this share of the machine taken by other processes, a number is marked "~".
SHARED_MACHINE = 0.10


@dataclass
class Value:
    number: float
    marks: str = ""  # "~": others shared the cores; "!": errors, not a result
    note: str = ""  # e.g. how many keys a listing really had

    def text(self) -> str:
        n = self.number
        if math.isnan(n):
            body = "-"
        elif n >= 100:
            body = f"{n:.0f}"
        elif n >= 10:
            body = f"{n:.1f}"
        else:
            body = f"{n:.2f}"
        marks = f" {self.marks}" if self.marks else ""
        return body + marks + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class Goal:
    text: str
    met: Callable[[dict[str, Value]], bool | None]  # None: cannot tell (a side is missing)


@dataclass
class Row:
    label: str
    unit: str
    values: dict[str, Value] = field(default_factory=dict)
    goal: Goal | None = None
    compare: bool = True  # False: the S/peer columns make no sense for this row (a ratio)


def ratio(values: dict[str, Value], peer: str) -> float | None:
    mine, theirs = values.get(SOUVERAIN), values.get(peer)
    if mine is None or theirs is None or theirs.number == 0 or "!" in mine.marks + theirs.marks:
        return None
    return mine.number / theirs.number


def at_least(peer: str, times: float) -> Callable[[dict[str, Value]], bool | None]:
    def met(values: dict[str, Value]) -> bool | None:
        r = ratio(values, peer)
        return None if r is None else r >= times

    return met


def all_of(*checks: Callable[[dict[str, Value]], bool | None]) -> Callable[..., bool | None]:
    def met(values: dict[str, Value]) -> bool | None:
        results = [check(values) for check in checks]
        if False in results:
            return False
        return None if None in results else True

    return met


def at_least_own(limit: float) -> Callable[[dict[str, Value]], bool | None]:
    def met(values: dict[str, Value]) -> bool | None:
        mine = values.get(SOUVERAIN)
        if mine is None or "!" in mine.marks or math.isnan(mine.number):
            return None
        return mine.number >= limit

    return met


def below(limit: float) -> Callable[[dict[str, Value]], bool | None]:
    def met(values: dict[str, Value]) -> bool | None:
        mine = values.get(SOUVERAIN)
        return None if mine is None else mine.number < limit

    return met


COLUMNS = (SOUVERAIN, MOTO, SWIFT, NGINX)
RATIOS = (MOTO, SWIFT, NGINX)


def table(rows: Sequence[Row]) -> str:
    header = ["measurement", "unit", *COLUMNS, *(f"S/{peer}" for peer in RATIOS), "target"]
    lines = [header]
    for row in rows:
        cells = [row.label, row.unit]
        cells += [row.values[name].text() if name in row.values else "-" for name in COLUMNS]
        for peer in RATIOS:
            r = ratio(row.values, peer) if row.compare else None
            cells.append("-" if r is None else f"{r:.2f}x")
        if row.goal is None:
            cells.append("")
        else:
            verdict = row.goal.met(row.values)
            word = {True: "met", False: "MISSED", None: "n/a"}[verdict]
            cells.append(f"{row.goal.text}: {word}")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        left = [line[0].ljust(widths[0]), line[1].ljust(widths[1])]
        middle = [v.rjust(w) for v, w in zip(line[2:-1], widths[2:-1], strict=True)]
        out.append("  ".join([*left, *middle, line[-1]]).rstrip())
        if n == 0:
            out.append("-" * max(len(o) for o in out))
    return "\n".join(out)
