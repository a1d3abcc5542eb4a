"""Answering questions from sealed, noisy cells: the only way counts leave a noised site.

Every figure is a sum of released cells, each already safe to publish on its own, so no
combination of answers (differences, shifted windows, filters, repeats) knows more than
the cells themselves. A question is answered from:

- the smallest marginal that holds every dimension it groups or filters by, and
- for each time bucket, whole local days from daily cells and the rest (partial days at
  the edges, days not yet sealed) from hourly cells: the fewest cells, so the least noise.

Only sealed buckets take part; the answer says up to when.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo

from headcount_collector.errors import QueryRejected
from headcount_collector.release.catalogue import MARGINALS, Marginal, Resolution
from headcount_collector.release.policy import ReleasePolicy
from headcount_collector.stores.base import OneOf, ReleasedQuery, Store
from headcount_collector.timeutil import bucket_starts, local_day_start

__all__ = ["Answer", "Cell", "Column", "choose_marginal", "read_released"]

Column = str | tuple[str, str]


@dataclass(slots=True)
class Cell:
    count: int = 0
    variance: float = 0.0


@dataclass(slots=True)
class Answer:
    """Per time bucket (None for a total), per tuple of group values: a noisy sum."""

    cells: dict[int | None, dict[tuple[object, ...], Cell]] = field(default_factory=dict)
    marginal: Marginal | None = None
    hourly_before_retention: bool = False


def _needed(columns: Sequence[Column]) -> frozenset[str]:
    return frozenset("props" if isinstance(c, tuple) else c for c in columns)


def choose_marginal(
    kind: str,
    group_by: Sequence[Column],
    filters: Sequence[tuple[Column, str | int]],
) -> Marginal:
    """The marginal with the fewest dimensions that can answer the question exactly."""
    needed = _needed([*group_by, *(column for column, _ in filters)])
    fixed: dict[str, object] = {c: v for c, v in filters if isinstance(c, str)}
    usable = [m for m in MARGINALS[kind] if m.answers(needed, fixed)]
    if not usable:  # the full cross-product answers everything
        raise QueryRejected("by", "no released table holds this combination")
    # Conditioned marginals (entries) are smaller than the table they come from.
    return min(usable, key=lambda m: (len(m.dims), -len(m.where)))


def _segments(
    span: tuple[int, int],
    targets: Sequence[tuple[int, int]],
    sealed: Mapping[str, int],
    zone: ZoneInfo,
) -> dict[Resolution, list[tuple[int, int, int]]]:
    """Split each target bucket into daily and hourly pieces within the sealed part."""
    days_until = sealed.get("d")
    hours_until = sealed.get("h")
    pieces: dict[Resolution, list[tuple[int, int, int]]] = {"h": [], "d": []}
    for target_lo, target_hi in targets:
        lo, hi = max(span[0], target_lo), min(span[1], target_hi)
        cursor = lo
        while cursor < hi:
            day = local_day_start(cursor, zone)
            next_day = local_day_start(day + 26 * 3600, zone)
            whole = day == cursor and next_day <= hi
            if whole and days_until is not None and next_day <= days_until:
                _append(pieces["d"], (cursor, next_day, target_lo))
            elif hours_until is not None:
                stop = min(next_day, hi, hours_until)
                if stop > cursor:
                    _append(pieces["h"], (cursor, stop, target_lo))
            cursor = min(next_day, hi)
    return pieces


def _next_bucket(resolution: Resolution, start: int, zone: ZoneInfo) -> int:
    if resolution == "h":
        return start + 3600
    return local_day_start(start + 26 * 3600, zone)


def _append(pieces: list[tuple[int, int, int]], piece: tuple[int, int, int]) -> None:
    # Contiguous pieces of one target merge, keeping the query's VALUES list short.
    if pieces and pieces[-1][1] == piece[0] and pieces[-1][2] == piece[2]:
        pieces[-1] = (pieces[-1][0], piece[1], piece[2])
    else:
        pieces.append(piece)


def read_released(
    store: Store,
    site_id: str,
    zone: ZoneInfo,
    policy: ReleasePolicy,
    kind: str,
    group_by: Sequence[Column],
    filters: Sequence[tuple[Column, str | int]],
    interval: Literal["hour", "day", "week", "month", "total"],
    span: tuple[int, int],
    sealed: Mapping[str, int],
    hourly_from: int,
    marginal: Marginal | None = None,
    one_of: OneOf | None = None,
) -> Answer:
    """Sum released cells for a question; never reads a true count.

    ``one_of`` (a column the marginal holds, and its values) keeps only the cells with
    one of those values: each group's sums are those of its own question, for several
    groups in one read.
    """
    if not policy.noise:
        raise ValueError("read_released is for noised sites")
    chosen = marginal or choose_marginal(kind, group_by, filters)
    if one_of is not None and (one_of[0] not in chosen.dims or not one_of[1]):
        # A column the cells lack would match nothing, and an empty list is not SQL.
        raise ValueError(f"one_of needs a column of {chosen.dims} and at least one value")
    # Conditions the marginal already applied are not filters on its cells.
    conditioned = dict(chosen.where)
    cell_filters = tuple(
        (c, v) for c, v in filters if not (isinstance(c, str) and conditioned.get(c) == v)
    )
    answer = Answer(marginal=chosen)
    hours_until = sealed.get("h")
    if interval == "hour":
        if hours_until is None:
            return answer
        lo, hi = max(span[0], hourly_from), min(span[1], hours_until)
        answer.hourly_before_retention = span[0] < hourly_from
        if lo < hi:
            query = ReleasedQuery(
                chosen,
                site_id,
                "h",
                ((lo, hi, 0),),
                tuple(group_by),
                cell_filters,
                per_bucket=True,
                one_of=one_of,
            )
            _collect(answer, store.query_released(query), per_bucket=True)
        return answer
    targets = [span] if interval == "total" else bucket_starts(span[0], span[1], interval, zone)
    pieces = _segments(span, targets, sealed, zone)
    hourly = pieces["h"]
    if hourly and hourly[0][0] < hourly_from:
        answer.hourly_before_retention = True
        hourly = [(max(lo, hourly_from), hi, t) for lo, hi, t in hourly if hi > hourly_from]
    by_resolution: tuple[tuple[Resolution, list[tuple[int, int, int]]], ...] = (
        ("d", pieces["d"]),
        ("h", hourly),
    )
    for resolution, segments in by_resolution:
        if not segments:
            continue
        one_bucket_each = all(
            lo == target and hi == _next_bucket(resolution, lo, zone) for lo, hi, target in segments
        )
        if one_bucket_each and interval != "total":
            # Each stored bucket is its own answer row (days by day): read them directly
            # instead of joining every row against a long list of segments.
            wanted = {lo for lo, _, _ in segments}
            span_rows = ((segments[0][0], segments[-1][1], 0),)
            query = ReleasedQuery(
                chosen,
                site_id,
                resolution,
                span_rows,
                tuple(group_by),
                cell_filters,
                per_bucket=True,
                one_of=one_of,
            )
            rows = [row for row in store.query_released(query) if row[0] in wanted]
            _collect(answer, rows, per_bucket=True)
            continue
        query = ReleasedQuery(
            chosen,
            site_id,
            resolution,
            tuple(segments),
            tuple(group_by),
            cell_filters,
            one_of=one_of,
        )
        _collect(answer, store.query_released(query), per_bucket=False, total=interval == "total")
    return answer


def _collect(
    answer: Answer,
    rows: Sequence[tuple[object, ...]],
    *,
    per_bucket: bool,
    total: bool = False,
) -> None:
    for row in rows:
        target = None if total else int(row[0])  # type: ignore[call-overload]
        values = tuple(row[1:-2])
        count = int(row[-2])  # type: ignore[call-overload]
        variance = float(row[-1])  # type: ignore[arg-type]
        bucket = answer.cells.setdefault(target, {})
        cell = bucket.get(values)
        if cell is None:
            bucket[values] = Cell(count, variance)
        else:
            cell.count += count
            cell.variance += variance
