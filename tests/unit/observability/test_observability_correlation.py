from __future__ import annotations

import pytest

from kora.observability import (
    correlation_scope,
    get_correlation_id,
    is_valid_correlation_id,
    new_correlation_id,
)


@pytest.mark.parametrize(
    "value",
    [
        "abcd1234",
        "0af7651916cd43dd8448eb211c80319c",
        "550e8400-e29b-41d4-a716-446655440000",
        "req:2024.11.25_A-b",
        "x" * 64,
    ],
)
def test_accepts_8_to_64_safe_characters(value: str) -> None:
    assert is_valid_correlation_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "short",
        "x" * 65,
        "has space1",
        "tab\there1",
        "line\nbreak1",
        "abcd1234\n",
        "quote'1234",
        "<script>alert(1)</script>",
        "caf\u00e9-12345",
        "slash/12345",
        None,
        12345678,
    ],
)
def test_refuses_anything_else(value: object) -> None:
    assert not is_valid_correlation_id(value)


def test_new_ids_are_valid_and_distinct() -> None:
    ids = {new_correlation_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(is_valid_correlation_id(value) for value in ids)


def test_scope_sets_then_restores_the_id() -> None:
    assert get_correlation_id() is None
    with correlation_scope("outer-12345") as outer:
        assert outer == "outer-12345" == get_correlation_id()
        with correlation_scope("inner-12345"):
            assert get_correlation_id() == "inner-12345"
        assert get_correlation_id() == "outer-12345"
    assert get_correlation_id() is None


@pytest.mark.parametrize("value", [None, "bad id", "x" * 100])
def test_scope_issues_a_new_id_when_none_or_invalid(value: str | None) -> None:
    with correlation_scope(value) as issued:
        assert issued != value
        assert is_valid_correlation_id(issued)
        assert get_correlation_id() == issued


def test_an_all_digit_correlation_id_is_refused_as_a_possible_phone_number() -> None:
    from kora.observability import is_valid_correlation_id

    assert not is_valid_correlation_id("2250701020304")
    assert not is_valid_correlation_id("225-0701-020304")
    assert is_valid_correlation_id("req-2250701")
