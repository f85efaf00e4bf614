"""Metric charts as SVG, drawn on the server: one chart per metric key, one line per (experiment,
attempt, replica), x = step or seconds since the line's run started. The template draws what
:func:`charts` computes (coordinates in the chart's own box); no script and no library needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from broker.tracking.experiment_view import SeriesPoint

WIDTH, HEIGHT = 480, 260
#: The plot area inside the box (room for the axis labels on the left and below).
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 36
#: Line colours (readable on white), one per line, in turn; a compared experiment's lines are dashed.
COLOURS = ("#0b57d0", "#b3261e", "#1a7f37", "#8a5a00", "#6f42c1", "#00796b", "#c2185b", "#37474f")


@dataclass(frozen=True)
class Line:
    """One metric line as logged: whose (experiment, attempt, replica) and its points."""

    experiment: str
    attempt: int
    replica: str
    points: Sequence[SeriesPoint]
    compared: bool = False
    #: Epoch milliseconds the time axis counts from (the run's first point).
    origin: int = 0


@dataclass
class DrawnLine:
    label: str
    experiment: str
    attempt: int
    replica: str
    colour: str
    dashed: bool
    points: str  # "x,y x,y ..." in the chart's box
    dots: list[tuple[float, float]] = field(default_factory=list)  # a lone point is drawn as a dot


@dataclass
class Chart:
    key: str
    x_label: str
    lines: list[DrawnLine]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    right: int = WIDTH - RIGHT
    bottom: int = HEIGHT - BOTTOM


def _number(value: float) -> str:
    return f"{value:.4g}"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    return [low + (high - low) * i / (count - 1) for i in range(count)]


def _x_of(point: SeriesPoint, line: Line, by_time: bool) -> float:
    return (point.timestamp - line.origin) / 1000 if by_time else float(point.step)


def _label(line: Line, several_attempts: bool, several_experiments: bool) -> str:
    parts = []
    if several_experiments:
        parts.append(line.experiment)
    if several_attempts:
        parts.append(f"attempt {line.attempt}")
    parts.append(line.replica or "(no replica)")
    return " · ".join(parts)


def chart(key: str, lines: Sequence[Line], *, by_time: bool) -> Chart:
    """The chart of metric ``key`` with ``lines`` (non-finite values are left out of the line)."""
    finite = [
        (line, [(_x_of(p, line, by_time), p.value) for p in line.points if math.isfinite(p.value)])
        for line in lines
    ]
    xs = [x for _, pts in finite for x, _ in pts] or [0.0]
    ys = [y for _, pts in finite for _, y in pts] or [0.0]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(ys), max(ys)
    if y_high == y_low:
        y_low, y_high = y_low - 1, y_high + 1
    if x_high == x_low:
        x_high = x_low + 1
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM

    def sx(x: float) -> float:
        return round(LEFT + (x - x_low) / (x_high - x_low) * (right - LEFT), 2)

    def sy(y: float) -> float:
        return round(bottom - (y - y_low) / (y_high - y_low) * (bottom - TOP), 2)

    several_attempts = len({(line.experiment, line.attempt) for line in lines}) > len(
        {line.experiment for line in lines}
    )
    several_experiments = len({line.experiment for line in lines}) > 1
    drawn = []
    for index, (line, pts) in enumerate(finite):
        coords = [(sx(x), sy(y)) for x, y in pts]
        drawn.append(
            DrawnLine(
                label=_label(line, several_attempts, several_experiments),
                experiment=line.experiment,
                attempt=line.attempt,
                replica=line.replica,
                colour=COLOURS[index % len(COLOURS)],
                dashed=line.compared,
                points=" ".join(f"{x},{y}" for x, y in coords),
                dots=coords if len(coords) == 1 else [],
            )
        )
    return Chart(
        key=key,
        x_label="seconds since the run's first point" if by_time else "step",
        lines=drawn,
        x_ticks=[(sx(v), _number(v)) for v in _ticks(x_low, x_high)],
        y_ticks=[(sy(v), _number(v)) for v in _ticks(y_low, y_high)],
    )


def all_charts(by_key: dict[str, list[Line]], *, by_time: bool) -> list[Chart]:
    """One chart per metric key (sorted), each with the lines logged for it."""
    return [chart(key, by_key[key], by_time=by_time) for key in sorted(by_key)]
