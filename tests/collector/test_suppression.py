"""Small-count suppression: adversarial datasets and properties over random ones."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from headcount_collector.stores import Store
from headcount_collector.suppression import Cell, SuppressedGroup, suppress_group
from tests.collector.test_query import NOW, pv, seed, stats, utc_hour
from tests.conftest import READ_TOKEN


def cells(*counts: int) -> list[Cell]:
    return [Cell((f"/r{i}",), c) for i, c in enumerate(counts)]


def released_numbers(group: SuppressedGroup) -> list[int]:
    numbers = [c.count for c in group.released]
    if group.other is not None:
        numbers.append(group.other)
    if group.total is not None:
        numbers.append(group.total)
    return numbers


def assert_nothing_recoverable(source: list[Cell], group: SuppressedGroup, k: int) -> None:
    shown = {c.key for c in group.released}
    withheld_small = [c.count for c in source if c.key not in shown and c.count < k]
    numbers = released_numbers(group)
    for secret in withheld_small:
        assert secret not in numbers, (secret, numbers)
        for a, b in itertools.permutations(numbers, 2):
            assert a - b != secret, (a, b, secret)
    assert all(c.count >= k for c in group.released)
    if group.other is not None:
        assert group.other >= k


ADVERSARIAL = {
    "single-one-among-large": (1000, 2000, 3000, 1),
    "one-and-its-complement": (1000, 1),
    "several-small-summing-to-k": (1000, 2000, 1, 1, 1, 2),
    "small-cells-sum-below-k": (1000, 2000, 2, 1),
    "all-small-but-total-at-least-k": (2, 2, 1),
    "all-small-total-below-k": (1, 2, 1),
    "small-next-to-near-threshold": (5, 1000, 4),
    "many-ones": (1,) * 12 + (5000,),
    "exactly-k": (5, 5000, 9000),
}


@pytest.mark.parametrize("counts", list(ADVERSARIAL.values()), ids=list(ADVERSARIAL))
def test_adversarial_groups(counts: tuple[int, ...]) -> None:
    source = cells(*counts)
    group = suppress_group(source, k=5)
    assert_nothing_recoverable(source, group, 5)
    if group.total is not None:
        assert sum(c.count for c in group.released) + (group.other or 0) == group.total


def test_a_whole_group_below_k_releases_nothing() -> None:
    group = suppress_group(cells(1, 2, 1), k=5)
    assert group.released == []
    assert group.total is None
    assert group.other is None
    # Not even how many cells it had: a bucket of a few events looks like an empty one.
    assert group.withheld == 0


def test_withheld_cells_cannot_be_pinned_down_by_their_number() -> None:
    # Five hidden 1s sum to k: released alone, (other) = 5 over withheld = 5 would say
    # every hidden cell was exactly 1. A released cell is folded in with them.
    group = suppress_group(cells(1, 1, 1, 1, 1, 500, 900), k=5)
    assert group.other == 505
    assert group.withheld == 6
    assert [c.count for c in group.released] == [900]


def test_k_one_turns_suppression_off() -> None:
    group = suppress_group(cells(1, 2, 3), k=1)
    assert sorted(c.count for c in group.released) == [1, 2, 3]
    assert group.withheld == 0


@given(
    st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=25),
    st.integers(min_value=2, max_value=10),
    st.one_of(st.none(), st.integers(min_value=1, max_value=10)),
)
def test_remainder_never_exposes_a_small_cell(counts: list[int], k: int, limit: int | None) -> None:
    source = cells(*counts)
    group = suppress_group(source, k, limit)
    assert all(c.count >= k for c in group.released)
    if group.total is None:
        assert group.released == []
        assert group.other is None
        assert sum(counts) < k
        return
    assert group.total == sum(counts)
    hidden = group.total - sum(c.count for c in group.released)
    # What a reader can derive about the withheld cells is their sum, and it is >= k.
    assert hidden == 0 or hidden >= k
    assert (group.other or 0) == hidden


def test_through_the_api_a_lone_one_is_never_recoverable(
    store: Store, make_client: Callable[..., TestClient]
) -> None:
    h = utc_hour(2026, 11, 24, 9)
    seed(
        store,
        "blog",
        [
            ("pageview", h, pv("/"), 1000),
            ("pageview", h, pv("/pricing"), 2000),
            ("pageview", h, pv("/account/delete"), 1),
        ],
    )
    client = make_client(clock=lambda: NOW)
    window = {"from": "2026-11-24", "to": "2026-11-25"}
    for interval in ("hour", "day", "total"):
        body = stats(client, by="route", interval=interval, **window)
        assert body["withheld"] == 2
        numbers = [r["count"] for r in body["rows"]]
        numbers += [t["count"] for t in body["totals"]]
        assert "/account/delete" not in str(body)
        assert 1 not in numbers
        assert all(a - b != 1 for a, b in itertools.permutations(numbers, 2))
        csv_text = client.get(
            "/v1/stats",
            params={"by": "route", "interval": interval, "format": "csv", **window},
            headers={"Authorization": f"Bearer {READ_TOKEN}"},
        ).text
        assert "/account/delete" not in csv_text


def test_a_folded_cell_beside_a_row_of_k_does_not_pin_the_withheld_sum() -> None:
    # A review's attack: / 1000, /about 5, /pricing 5 and a withheld 1 or 2 with k = 5.
    # Folding /pricing alone showed /about 5, so the folded cell was exactly 5 and the
    # withheld count (other) - 5. Folding goes on until the shown rows bound nothing.
    for hidden in (1, 2):
        group = suppress_group(cells(1000, 5, 5, hidden), k=5)
        assert [c.count for c in group.released] == [1000]
        assert group.other == 10 + hidden


@given(
    st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=25),
    st.integers(min_value=2, max_value=10),
    st.one_of(st.none(), st.integers(min_value=1, max_value=10)),
)
def test_a_reader_who_knows_how_many_shown_cells_were_folded_cannot_narrow_the_withheld_sum(
    counts: list[int], k: int, limit: int | None
) -> None:
    """Given more than a response says (how many cells >= k went into (other)), the
    withheld sum still lies in an interval at least k wide while any row is shown."""
    group = suppress_group(cells(*counts), k, limit)
    hidden = [c for c in counts if c < k]
    if group.total is None or not hidden or not group.released:
        return
    assert group.other is not None
    # Cells >= k inside (other): folded beside the withheld ones, or cut by the limit.
    folded = sum(1 for c in counts if c >= k) - len(group.released)
    smallest_shown = min(c.count for c in group.released)
    low = group.other - folded * smallest_shown
    high = group.other - folded * k
    assert low <= sum(hidden) <= high
    assert high - low >= k, (counts, k, limit, group)
