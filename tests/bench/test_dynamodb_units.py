"""DynamoDB item sizes and request units (bench/dynamodb_units.py) against AWS's published rules."""

import base64

import pytest

from bench.dynamodb_units import item_size, number_size, read_units, value_size, write_units


def test_strings_and_names_count_utf8_bytes():
    assert item_size({"pk": {"S": "abc"}}) == 2 + 3
    assert item_size({"név": {"S": "é€"}}) == 4 + 5


@pytest.mark.parametrize(
    ("number", "size"),
    [("0", 1), ("7", 2), ("12", 2), ("123", 3), ("1767225600", 5), ("1E+5", 2), ("-12.50", 3), ("0.001", 2)],
)
def test_numbers_count_two_significant_digits_a_byte_plus_one(number, size):
    assert number_size(number) == size


def test_binary_counts_raw_bytes_whether_given_as_bytes_or_base64():
    assert value_size({"B": b"\x00\x01\x02"}) == 3
    assert value_size({"B": base64.b64encode(b"\x00\x01\x02").decode()}) == 3


def test_lists_and_maps_add_three_bytes_and_one_per_element():
    assert value_size({"L": []}) == 3
    assert value_size({"M": {}}) == 3
    assert value_size({"L": [{"S": "ab"}, {"BOOL": True}]}) == 3 + (1 + 2) + (1 + 1)
    assert value_size({"M": {"k": {"S": "ab"}, "n": {"NULL": True}}}) == 3 + (1 + 1 + 2) + (1 + 1 + 1)


def test_sets_are_the_sum_of_their_elements():
    assert value_size({"SS": ["a", "bc"]}) == 3
    assert value_size({"NS": ["1", "123"]}) == 2 + 3


def test_an_absent_item_has_no_size_and_unknown_types_are_refused():
    assert item_size(None) == item_size({}) == 0
    with pytest.raises(ValueError):
        value_size({"X": "?"})
    with pytest.raises(ValueError):
        number_size("twelve")


def test_write_units_per_started_kilobyte_of_the_larger_version_at_least_one():
    assert write_units(0, 0) == 1
    assert write_units(0, 1024) == 1
    assert write_units(0, 1025) == 2
    assert write_units(2100, 500) == 3  # an update that shrinks an item pays for the item before it


def test_read_units_per_started_4kb_half_when_eventually_consistent():
    assert read_units(0, consistent=False) == 0.5  # an absent item still costs one step
    assert read_units(4096, consistent=True) == 1
    assert read_units(4097, consistent=False) == 1.0
    assert read_units(9000, consistent=True) == 3
