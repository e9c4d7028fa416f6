"""Export the event store as hive-partitioned Parquet (date=YYYY-MM-DD/user_id=.../*.parquet).

That layout is what Spark, Ray Data, DuckDB and Polars read natively, so feature and scoring
code can run over it under a distributed engine when one machine is not enough.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from store.audit import append_audit
from store.db import Store
from store.schema import EVENT_COLUMNS


@dataclass(frozen=True)
class ExportReport:
    folder: str
    events: int
    files: int
    partitions: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def export_events_parquet(store: Store, folder: str | Path, *, actor: str = "cli") -> ExportReport:
    """Write every event, partitioned by the event's UTC date and user; existing files are replaced.

    Only the events table is exported: no OTP secrets, no models, nothing typed.
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    columns = ", ".join(f"e.{c}" for c in EVENT_COLUMNS if c != "user_id")
    target = str(folder).replace("'", "''")
    with store.transaction() as cursor:
        events = cursor.execute("SELECT count(*) FROM events").fetchall()[0][0]
        cursor.execute(f"""
            COPY (
                SELECT {columns}, e.user_id,
                       CAST(s.started_at + to_milliseconds(CAST(floor(e.t_ms) AS BIGINT)) AS DATE) AS date
                FROM events e JOIN sessions s USING (session_id)
                ORDER BY e.session_id, e.seq
            ) TO '{target}' (FORMAT parquet, PARTITION_BY (date, user_id), OVERWRITE_OR_IGNORE true)""")
        files = sorted(folder.rglob("*.parquet"))
        report = ExportReport(str(folder), events, len(files), len({f.parent for f in files}))
        append_audit(cursor, actor=actor, action="export", subject=str(folder), details=report.as_dict())
    return report
