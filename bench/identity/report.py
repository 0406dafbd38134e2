"""Print the identity bench's table: operation x concurrency, Souverain beside Keystone."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from wrk_load import CellResult

SOUVERAIN = "Souverain"
KEYSTONE = "Keystone"


@dataclass
class Bound:
    """bcrypt.checkpw per second with `workers` processes; one sample per measurement."""

    workers: int
    samples: list[float] = field(default_factory=list)
    foreign_cpu: list[float] = field(default_factory=list)  # per sample, as in CellResult

    @property
    def per_s(self) -> float:
        return statistics.fmean(self.samples) if self.samples else float("nan")


@dataclass(frozen=True)
class Row:
    label: str
    concurrency: int
    cells: dict[str, CellResult]  # by target name; a skipped target is absent


# Above this share of the machine taken by other processes, a number is marked "~".
SHARED_MACHINE = 0.10


def _marks(cell: CellResult) -> str:
    return ("~" if cell.foreign_cpu > SHARED_MACHINE else "") + ("!" if cell.failed else "")


def _rps(cell: CellResult | None) -> str:
    if cell is None:
        return "-"
    value = cell.requests_per_s
    text = f"{value:.1f}" if value < 100 else f"{value:.0f}"
    marks = _marks(cell)
    return f"{text} {marks}" if marks else text


def _ms(cell: CellResult | None) -> str:
    if cell is None or math.isnan(cell.p99_ms):
        return "-"
    value = cell.p99_ms
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def _ratio(souverain: CellResult | None, keystone: CellResult | None) -> str:
    if souverain is None or keystone is None or keystone.requests_per_s == 0:
        return "-"
    return f"{souverain.requests_per_s / keystone.requests_per_s:.2f}x"


def table(rows: Sequence[Row]) -> str:
    header = (
        "operation", "conc", f"{SOUVERAIN} rps", f"{KEYSTONE} rps", "ratio S/K",
        f"{SOUVERAIN} p99", f"{KEYSTONE} p99",
    )  # fmt: skip
    lines = [header]
    for row in rows:
        s, k = row.cells.get(SOUVERAIN), row.cells.get(KEYSTONE)
        lines.append(
            (row.label, str(row.concurrency), _rps(s), _rps(k), _ratio(s, k), _ms(s), _ms(k))
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        first = line[0].ljust(widths[0])
        rest = "  ".join(
            value.rjust(width) for value, width in zip(line[1:], widths[1:], strict=True)
        )
        out.append(f"{first}  {rest}")
        if n == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def shared_machine(rows: Sequence[Row], bounds: dict[int, Bound]) -> list[str]:
    """One line per measurement during which other processes took a share of the cores."""
    notes = []
    for row in rows:
        for name, cell in row.cells.items():
            if cell.foreign_cpu > SHARED_MACHINE:
                notes.append(
                    f"~ {name} {row.label} c={row.concurrency}: other processes used "
                    f"{100 * cell.foreign_cpu:.0f}% of the machine"
                )
    for concurrency, bound in bounds.items():
        for n, share in enumerate(bound.foreign_cpu):
            if share > SHARED_MACHINE:
                notes.append(
                    f"~ bcrypt bound c={concurrency} sample {n + 1}: other processes used "
                    f"{100 * share:.0f}% of the machine"
                )
    return notes


def failures(rows: Sequence[Row]) -> list[str]:
    """One line per cell that saw errors: such a cell's numbers are not a result."""
    notes = []
    for row in rows:
        for name, cell in row.cells.items():
            if cell.failed:
                notes.append(f"! {name} {row.label} c={row.concurrency}: {cell.problems()}")
    return notes


def bound_lines(
    rounds: int,
    bcrypt_version: str,
    bounds: dict[int, Bound],
    password_rows: Sequence[Row],
) -> list[str]:
    """The bcrypt ceiling for issue-by-password, and how close each server gets to it."""
    lines = [
        f"bound set by the password hash alone: bcrypt.checkpw/s at cost {rounds} "
        f"(bcrypt {bcrypt_version}), min(c, cores) processes, sampled before and after each pair"
    ]
    for row in password_rows:
        bound = bounds[row.concurrency]
        samples = "/".join(
            f"{rate:.2f}" + ("~" if share > SHARED_MACHINE else "")
            for rate, share in zip(bound.samples, bound.foreign_cpu, strict=True)
        )
        parts = [f"  c={row.concurrency:<3} bound {bound.per_s:5.2f}/s ({samples})"]
        for name in (SOUVERAIN, KEYSTONE):
            cell = row.cells.get(name)
            if cell is not None:
                share = 100 * cell.requests_per_s / bound.per_s
                marks = _marks(cell)
                flag = f" {marks}" if marks else ""
                parts.append(
                    f"{name} {cell.requests_per_s:5.2f} rps = {share:3.0f}% of bound{flag}"
                )
        lines.append("   ".join(parts))
    return lines
