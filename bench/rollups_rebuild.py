"""`kesher rollups rebuild` over the demo shop's events, on SQLite and PostgreSQL: time and peak memory.

    .venv/bin/python bench/rollups_rebuild.py                                   # 1,000,000 contacts, 10,000,000 events
    .venv/bin/python bench/rollups_rebuild.py --contacts 20000 --events 200000  # a quick run

Uses the data `bench/segments.py` builds and keeps (building it first when missing: at the full size
about 40 minutes on SQLite and 10 more for its copy to PostgreSQL), and runs the command itself as
a user would, in a process of its own, sampling its resident memory every 50 ms. The rebuild
recomputes every rollup (per contact, per category, the last campaigns) from the events in SQL, so
its memory should not grow with the number of events. Each run is checked: the rollups it leaves
equal those kept at ingest (a count and a sum over every contact's rollup).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, run_measured  # noqa: E402
from segments import DATA, prepared  # noqa: E402

from kesher.accounts import service as accounts  # noqa: E402
from kesher.db import Database  # noqa: E402
from kesher.db.migrate import upgrade  # noqa: E402
from kesher.demo import load  # noqa: E402
from kesher.events.models import CategoryStat, ContactRollup, Event  # noqa: E402


def fingerprint(db: Database, workspace_id: int) -> tuple[int, ...]:
    """Sums over every rollup row: equal before and after when the rebuild agrees with ingest."""
    r = ContactRollup
    with db.session() as session:
        row = session.execute(select(func.count(), func.sum(r.open_count), func.sum(r.click_count),
                                     func.sum(r.purchase_count), func.sum(r.revenue_minor), func.sum(r.sent_count))
                              .where(r.workspace_id == workspace_id)).one()
        categories = session.scalar(select(func.sum(CategoryStat.purchase_count))
                                    .where(CategoryStat.workspace_id == workspace_id))
    return (*(int(v or 0) for v in row), int(categories or 0))


def bench(backend: str, args: argparse.Namespace) -> None:
    url = prepared(backend, args.contacts, args.events, args.data_dir)
    db = Database(url)
    upgrade(db.engine)
    with db.session() as session:
        workspace = accounts.get_workspace(session, load.DEMO_SLUG)
        events = session.scalar(select(func.count()).select_from(Event).where(Event.workspace_id == workspace.id))
        slug, workspace_id = workspace.slug, workspace.id
    before = fingerprint(db, workspace_id)
    print(f"  {events:,} events, {before[0]:,} contacts with rollups; load average {os.getloadavg()[0]:.1f}",
          flush=True)
    env = {**os.environ, "KESHER_DATABASE_URL": url}
    kesher = str(Path(sys.executable).parent / "kesher")
    run = run_measured([kesher, "rollups", "rebuild", "--workspace", slug], env)
    if run.returncode:
        raise SystemExit(f"{backend}: the rebuild failed:\n{run.stderr[-2000:]}")
    after = fingerprint(db, workspace_id)
    db.dispose()
    print(f"  rebuild: {run.seconds:,.1f} s ({events / run.seconds:,.0f} events/s), "
          f"peak RSS {run.peak_rss_mb:,.0f} MB; rollups {'equal to' if after == before else 'DIFFERENT from'} those kept at ingest", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--data-dir", type=Path, default=DATA, help="where the SQLite databases are kept")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    print(f"data: the demo shop, {args.contacts:,} contacts and about {args.events:,} events (seed 42)", flush=True)
    for backend in args.backends.split(","):
        print(f"== {backend}", flush=True)
        bench(backend, args)


if __name__ == "__main__":
    main()
