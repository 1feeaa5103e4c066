"""Event ingest through the HTTP API, rollups included, on SQLite and PostgreSQL.

    .venv/bin/python bench/ingest_events.py --contacts 20000 --events 200000

Starts `kesher serve` on a free local port against a fresh database holding the demo shop's
contacts, then posts the demo shop's event history in calls of 1,000 events and reports
events/s and the latency of a call (median and p99). Target: 25,000 events/s on each.
`--order time` sends the history in the order it happened, as a live shop would, instead of
contact by contact.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime
from itertools import islice
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).parent))
from common import drop_database, fresh_database, machine  # noqa: E402

from kesher.accounts import service as accounts  # noqa: E402
from kesher.contacts.service import build_input  # noqa: E402
from kesher.contacts.upsert import upsert_contacts  # noqa: E402
from kesher.db import Database  # noqa: E402
from kesher.db.migrate import upgrade  # noqa: E402
from kesher.demo.generator import contacts, events  # noqa: E402

# With the server's autovacuum off, the benchmark refreshes the planner's statistics itself, table by
# table, when autovacuum would: once a table has had more rows written since its last ANALYZE than
# autovacuum_analyze_threshold + autovacuum_analyze_scale_factor x its rows (50 + 10% by default).
DUE_FOR_ANALYZE = text(
    "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
    "WHERE s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float "
    "+ current_setting('autovacuum_analyze_scale_factor')::float * greatest(c.reltuples, 0)")
FIELDS = ("external_id", "email", "phone", "first_name", "last_name", "city")


def prepare(url: str, n_contacts: int) -> str:
    """Migrate, create a workspace with the demo contacts, and return an API key."""
    db = Database(url)
    upgrade(db.engine)
    with db.session() as s:
        ws = accounts.create_workspace(s, "bench")
        _, key = accounts.create_api_key(s, ws, "bench")
    people = contacts(n_contacts)
    while batch := list(islice(people, 5000)):
        with db.session() as s:
            items = [build_input(None, ws.id, i, {k: p[k] for k in FIELDS}, known_fields={}) for i, p in enumerate(batch)]
            upsert_contacts(s, ws.id, items, source="bench")
    db.dispose()
    return key


def payloads(n_contacts: int, n_events: int, per_call: int, order: str = "contact") -> list[bytes]:
    """The calls' bodies; `order` "contact" sends each contact's year in turn (a store's backfill),
    "time" sends every event in the order it happened (a live shop, over a year)."""
    def encode(e: dict) -> dict:
        return {**e, "ts": e["ts"].isoformat()} if isinstance(e["ts"], datetime) else e

    stream = events(n_contacts, n_events)
    if order == "time":
        stream = iter(sorted(stream, key=lambda e: e["ts"]))
    out = []
    while batch := list(islice(stream, per_call)):
        out.append(json.dumps({"events": [encode(e) for e in batch]}, ensure_ascii=False).encode())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(backend: str, n_contacts: int, bodies: list[bytes], total: int) -> None:
    url = fresh_database(backend)
    port = free_port()
    env = {**os.environ, "KESHER_DATABASE_URL": url, "KESHER_QUEUE": "immediate"}
    server = None
    analyze = None
    try:
        key = prepare(url, n_contacts)
        if backend == "postgresql":
            engine = create_engine(url, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                autovacuum = conn.execute(text("SHOW autovacuum")).scalar()
            if autovacuum != "on":  # docs: operating.md, "SQLite or PostgreSQL"
                print("postgresql: the server's autovacuum is off; the benchmark runs ANALYZE on each table when "
                      "autovacuum would (grown by 10%), inside the time measured", flush=True)
                analyze = engine
            else:
                engine.dispose()
        kesher = str(Path(sys.executable).parent / "kesher")
        server = subprocess.Popen([kesher, "serve", "--port", str(port), "--no-worker"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1",
                              headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                              timeout=120)
        for _ in range(100):
            try:
                client.get("/openapi.json")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        latencies, accepted, started = [], 0, time.perf_counter()
        for body in bodies:
            if analyze is not None:
                with analyze.connect() as conn:
                    for table in conn.execute(DUE_FOR_ANALYZE).scalars().all():
                        conn.execute(text(f'ANALYZE "{table}"'))
            t = time.perf_counter()
            answer = client.post("/events", content=body)
            latencies.append(time.perf_counter() - t)
            answer.raise_for_status()
            report = answer.json()
            if report["errors"]:
                raise SystemExit(f"{backend}: rejected events: {report['errors'][:3]}")
            accepted += report["accepted"]
        elapsed = time.perf_counter() - started
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"{backend:10s} {accepted:,} events in {elapsed:6.1f} s = {accepted / elapsed:8,.0f} events/s; "
              f"per call of {total // len(bodies):,}: median {statistics.median(latencies) * 1000:5.0f} ms, "
              f"p99 {p99 * 1000:5.0f} ms")
    finally:
        if analyze is not None:
            analyze.dispose()
        if server is not None:
            server.terminate()
            server.wait(10)
        drop_database(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--per-call", type=int, default=1_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--order", choices=("contact", "time"), default="contact",
                        help="contact: each contact's history in turn (a backfill); time: as it happened (live)")
    args = parser.parse_args()
    bodies = payloads(args.contacts, args.events, args.per_call, args.order)
    total = sum(body.count(b'"type"') for body in bodies)
    print(f"machine: {machine()}")
    print(f"data: {args.contacts:,} contacts, {total:,} events of the demo shop, {args.per_call:,} a call, "
          f"one server process, in {args.order} order")
    for backend in args.backends.split(","):
        run(backend, args.contacts, bodies, total)


if __name__ == "__main__":
    main()
