"""Tests for smn_alert._values: booleans and numbers read the same way for every setting."""

from __future__ import annotations

import pytest

from smn_alert._values import to_bool, to_number


class TestBool:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (True, True),
            (False, False),
            (1, True),
            (0, False),
            ("true", True),
            ("FALSE", False),
            (" Yes ", True),
            ("no", False),
            ("1", True),
            ("0", False),
        ],
    )
    def test_config_spellings_are_read(self, value: object, expected: bool) -> None:
        """What INI, YAML, JSON and the environment give for a boolean is read as one."""
        assert to_bool(value) is expected

    @pytest.mark.parametrize("value", ["maybe", "", 2, -1, 1.0, None, [True]])
    def test_anything_else_is_none(self, value: object) -> None:
        """Other values are not booleans: the caller refuses them, naming its setting."""
        assert to_bool(value) is None


class TestNumber:
    @pytest.mark.parametrize(
        ("value", "expected"), [(5, 5.0), (2.5, 2.5), ("7", 7.0), (" 60 ", 60.0), ("1e3", 1e3)]
    )
    def test_numbers_and_numeric_strings_are_read(self, value: object, expected: float) -> None:
        """Numbers, and strings that are numbers, become floats."""
        assert to_number(value) == expected

    @pytest.mark.parametrize(
        "value", [True, False, "lots", "", "nan", "inf", float("nan"), 10**400, "1e400", [5]]
    )
    def test_bools_non_numbers_and_infinities_are_none(self, value: object) -> None:
        """A bool is not a number here, nor anything not finite."""
        assert to_number(value) is None
