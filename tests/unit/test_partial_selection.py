"""--partitions / --map parsing: image partition -> target partition, bad input named."""

from __future__ import annotations

import pytest

from lifeboat.engine.partial import parse_selection
from lifeboat.errors import LifeboatError


def test_same_numbers_and_mapped():
    assert parse_selection("2,3") == {2: 2, 3: 3}
    assert parse_selection("2, 3", ["3=5"]) == {2: 2, 3: 5}
    assert parse_selection("1,2", ["1=4,2=6"]) == {1: 4, 2: 6}


@pytest.mark.parametrize(("partitions", "maps", "message"), [
    ("2,x", None, "'x' is not a partition number"),
    ("0", None, "'0' is not a partition number"),
    ("2", ["3=5"], "partition 3 is not one of --partitions 2"),
    ("2", ["2:5"], "'2:5' is not IMAGE_PARTITION=TARGET_PARTITION"),
    ("2,3", ["2=3"], "two image partitions would go onto target partition 3"),
])
def test_bad_selections_are_named(partitions, maps, message):
    with pytest.raises(LifeboatError, match=message):
        parse_selection(partitions, maps)
