"""Times in snapshot columns: int64 microseconds, given back exactly (the instant,
the microsecond, the UTC offset or its absence) on every path the reader takes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engram_worker.core import columns as C
from engram_worker.core.snapshot import SnapshotInvalid

ZONES = st.sampled_from(
    [UTC, None, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)


def times() -> st.SearchStrategy[datetime | None]:
    plain = st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.none()
    )
    return st.one_of(
        st.none(), st.builds(lambda d, z: d if z is None else d.replace(tzinfo=z), plain, ZONES)
    )


@settings(max_examples=200, deadline=None)
@given(values=st.lists(times(), max_size=20))
def test_times_round_trip_exactly(values: list[datetime | None]) -> None:
    zones: list[C.Zone] = []
    us = C.micros("last_recall", values, zones)
    read = C.read_zones(zones, len(values), ["last_recall"])
    back = C.datetimes("last_recall", us, read)
    assert [None if v is None else (v.isoformat()) for v in back] == [
        None if v is None else v.isoformat() for v in values
    ]
    # shared with another column where the same plain time is there
    other = list(values)
    zones2: list[C.Zone] = []
    us2 = C.micros("created_at", other, zones2)
    read2 = C.read_zones(zones + zones2, len(values), ["last_recall", "created_at"])
    made = C.datetimes("created_at", us2, read2)
    shared = C.datetimes("last_recall", us, read2, (us2, made))
    assert [None if v is None else v.isoformat() for v in shared] == [
        None if v is None else v.isoformat() for v in values
    ]


def test_a_time_beyond_what_datetime_holds_is_refused() -> None:
    with pytest.raises(SnapshotInvalid, match="unreadable record"):
        C.datetimes("occurred_at", np.array([2**62], dtype=np.int64), {})
