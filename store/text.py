"""Counts in words, shared by the pages, the CLI and the store's import summaries.

Imports nothing (the store imports it, and the CLI must start without Streamlit).
"""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`count` and the noun (or phrase) that goes with it: "1 new session", "2 new sessions".

    The plural adds an "s" unless `plural_form` is given ("1 row matches" / "3 rows match",
    "1 batch" / "2 batches"). Counts have thousands separators, as elsewhere in the app.
    """
    return f"{count:,} {singular if count == 1 else plural_form or singular + 's'}"
