"""Small Streamlit helpers shared by pages (no business logic)."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import streamlit as st

from store.errors import StoreError, ValidationError
from store.text import plural


def problems_frame(error: ValidationError) -> pl.DataFrame:
    """Row, column, reason of each problem, for a table under the error message."""
    return pl.DataFrame(
        {"row": [p.row for p in error.problems], "column": [p.column for p in error.problems],
         "reason": [p.reason for p in error.problems]},
        schema={"row": pl.Int64, "column": pl.String, "reason": pl.String},
    )


def show_error(error: StoreError) -> None:
    """A refused input: the message, then its problems as a table; says that nothing was stored."""
    if isinstance(error, ValidationError):
        more = f" ({error.total:,} problems in all; the first " \
               f"{plural(len(error.problems), 'is listed', 'are listed')})" \
            if error.total > len(error.problems) else ""
        st.error(f"**{error.source}** was refused; nothing of it was stored{more}.")
        st.dataframe(problems_frame(error), hide_index=True, width="stretch")
    else:
        st.error(str(error))


def progress_callback(label: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A (callback(done, total), clear) pair drawing an st.progress bar."""
    bar = st.progress(0.0, text=label)

    def update(done: int, total: int) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"{label}: {done:,} / {total:,}")

    return update, bar.empty


ACTION_STYLE = {"ALLOW": ("green", "SAFE"), "REQUIRE_OTP": ("orange", "UNSAFE"),
                "FLAG_SESSION": ("orange", "UNSAFE"), "DENY": ("red", "UNSAFE")}


def verdict_badge(verdict) -> None:
    """A session verdict: SAFE/UNSAFE, the action, the risk and the features that drove it."""
    if verdict is None:
        return
    colour, word = ACTION_STYLE.get(verdict.action, ("gray", verdict.verdict))
    st.markdown(f"### :{colour}[{word}] · {verdict.action} · risk {verdict.risk:.2f}")
    for reason in verdict.reasons:
        st.caption(reason)
    if verdict.top_features:
        st.dataframe(pl.DataFrame(verdict.top_features), hide_index=True)


def teach(text: str) -> None:
    """A plain-language explanation, shown only in teaching mode (sidebar toggle)."""
    if st.session_state.get("teaching_mode"):
        st.info(text, icon=":material/school:")
