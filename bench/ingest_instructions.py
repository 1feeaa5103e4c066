"""Instructions an ingested event costs, counted by valgrind: a figure that does not wander with the machine.

    .venv/bin/python bench/ingest_instructions.py              # 3 calls of 1,000 events, SQLite
    .venv/bin/python bench/ingest_instructions.py --calls 5

Wall-clock figures on a shared machine wander by a fifth or more from one minute to the next, so a
change worth a few percent cannot be seen in them. `valgrind --tool=callgrind` counts the
instructions a process runs, the same on every run of the same code and data (two runs agree
within 0.2%). This runs `ingest` in-process on SQLite, the demo shop's events in calls of 1,000
after `--warmup` calls that fill the caches, once without and once with `--calls` more, and prints
the difference per event: Kesher's Python, pydantic, SQLAlchemy and SQLite itself, without HTTP.
Under valgrind a run takes a minute or two. Compare two versions by running this on each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, instructions, machine  # noqa: E402

PER_CALL = 1_000


def prepare(folder: Path, calls: int) -> tuple[Path, Path]:
    """A SQLite database with the demo contacts, and the calls' events as JSON."""
    from ingest_events import payloads
    from ingest_events import prepare as with_contacts

    database, bodies = folder / "base.db", folder / "calls.json"
    with_contacts(f"sqlite:///{database}", 20_000)
    chosen = payloads(20_000, 200_000, PER_CALL)[:calls]
    bodies.write_text(json.dumps([json.loads(body)["events"] for body in chosen]))
    return database, bodies


def child(database: Path, bodies: Path, warmup: int, calls: int) -> None:
    """Ingest `warmup` calls, then `calls` more, into a copy of the database."""
    from kesher.accounts.models import Workspace
    from kesher.db import Database
    from kesher.events.ingest import ingest
    from kesher.memory import settle

    copy = database.with_name("run.db")
    for suffix in ("-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    shutil.copy(database, copy)
    batches = json.loads(bodies.read_text())
    db = Database(f"sqlite:///{copy}")
    settle()
    for raw in batches[:warmup + calls]:
        with db.session() as session:
            ingest(session, session.get_one(Workspace, 1), raw)
    db.dispose()


def counted(database: Path, bodies: Path, warmup: int, calls: int) -> int:
    """The instructions of a child process that ingests `warmup` + `calls` calls."""
    return instructions(__file__, ["--child", str(database), str(bodies), "--warmup", str(warmup),
                                   "--calls", str(calls)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=3, help="calls of 1,000 events counted")
    parser.add_argument("--warmup", type=int, default=5, help="calls made first, in both runs")
    parser.add_argument("--child", nargs=2, type=Path, metavar=("DATABASE", "CALLS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.warmup, args.calls)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as folder:
        database, bodies = prepare(Path(folder), args.warmup + args.calls)
        events = sum(len(batch) for batch in json.loads(bodies.read_text())[args.warmup:])
        without = counted(database, bodies, args.warmup, 0)
        with_calls = counted(database, bodies, args.warmup, args.calls)
    print(f"machine: {machine()}")
    print(f"data: 20,000 contacts; {events:,} events of the demo shop in {args.calls} calls of {PER_CALL:,}, "
          f"after {args.warmup} calls of warm-up; SQLite, in-process, no HTTP")
    print(f"ingest: {(with_calls - without) / events:,.0f} instructions an event "
          f"({with_calls:,} with the calls, {without:,} without)")


if __name__ == "__main__":
    main()
