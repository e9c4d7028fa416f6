"""Counts in words: one helper makes every "1 new sessions" read "1 new session"."""

from __future__ import annotations

import pytest

from store.text import plural


@pytest.mark.parametrize(("count", "words"), [(0, "0 sessions"), (1, "1 session"), (2, "2 sessions"),
                                              (1234, "1,234 sessions"), (-1, "-1 sessions")])
def test_plural_adds_an_s_unless_the_count_is_one(count: int, words: str) -> None:
    assert plural(count, "session") == words


def test_plural_takes_an_irregular_form_and_whole_phrases() -> None:
    assert plural(1, "row matches", "rows match") == "1 row matches"
    assert plural(3, "row matches", "rows match") == "3 rows match"
    assert plural(2, "new user") == "2 new users"
    assert plural(1, "batch", "batches") == "1 batch"
    assert plural(2, "batch", "batches") == "2 batches"
