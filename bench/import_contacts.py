"""Import of generated contacts from CSV on SQLite and PostgreSQL: rows/s and peak memory.

    .venv/bin/python bench/import_contacts.py --contacts 1000000

Targets: 10,000 rows/s on SQLite and 20,000 on PostgreSQL, peak memory under 300 MB.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, drop_database, fresh_database, machine, run_measured  # noqa: E402

from kesher.demo.generator import contacts  # noqa: E402

HEADERS = ["מספר לקוח", "שם פרטי", "שם משפחה", "טלפון", "אימייל", "עיר", "תאריך לידה", "מין", "הסכמה לדיוור"]
GENDER = {"female": "נקבה", "male": "זכר"}


def write_csv(path: Path, n: int) -> None:
    """The demo shop's customers as a Hebrew Excel export would hold them (local phone format, DD/MM/YYYY)."""
    with path.open("w", newline="", encoding="utf-8-sig") as fh:
        out = csv.writer(fh)
        out.writerow(HEADERS)
        for c in contacts(n):
            phone = "0" + c["phone"][4:6] + "-" + c["phone"][6:] if c["phone"] else ""
            out.writerow([c["external_id"], c["first_name"], c["last_name"], phone, c["email"] or "", c["city"],
                          c["birthday"].strftime("%d/%m/%Y"), GENDER.get(c["gender"], ""),
                          "כן" if c["consent_email"] else "לא"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    path = OUT / f"contacts-{args.contacts}.csv"
    if not path.exists():
        started = time.perf_counter()
        write_csv(path, args.contacts)
        print(f"generated {path.name} in {time.perf_counter() - started:.0f} s")
    size_mb = path.stat().st_size / 2**20
    print(f"machine: {machine()}")
    print(f"data: {args.contacts:,} contacts, CSV {size_mb:,.0f} MB, 9 columns, Hebrew headers")
    kesher = str(Path(sys.executable).parent / "kesher")
    for backend in args.backends.split(","):
        url = fresh_database(backend)
        env = {**os.environ, "KESHER_DATABASE_URL": url}
        try:
            run_measured([kesher, "workspace", "create", "bench"], env)
            run = run_measured([kesher, "import", "contacts", str(path), "--json"], env)
            if run.returncode not in (0, 1):
                print(run.stderr[-2000:])
                raise SystemExit(f"{backend}: import failed")
            import json

            report = json.loads(run.stdout)
            rate = args.contacts / run.seconds
            print(f"{backend:10s} {run.seconds:7.1f} s  {rate:9,.0f} rows/s  peak RSS {run.peak_rss_mb:5.0f} MB "
                  f"(main process {run.peak_main_mb:.0f} MB)  created {report['created']:,}, "
                  f"errors {len(report['errors']):,}")
        finally:
            drop_database(url)


if __name__ == "__main__":
    main()
