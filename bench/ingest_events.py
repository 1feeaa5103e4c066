"""Event ingest through the HTTP API, rollups included, on SQLite and PostgreSQL.

    .venv/bin/python bench/ingest_events.py --contacts 20000 --events 200000

Starts `kesher serve --workers N` (one process per core unless told) on a free local port
against a fresh database holding the demo shop's contacts, then posts the demo shop's event
history in calls of 1,000 events, from as many callers at a time as there are server processes,
and reports events/s, the latency of a call (median and p99) and the CPU time the server's
processes spent an event (where the machine's two cores go). Target: 25,000 events/s on each. `--workers 1 --clients 1` measures one process answering one call after another. `--order
time` sends the history in the order it happened, as a live shop would, instead of contact by
contact.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import islice
from pathlib import Path

import httpx
import psutil
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).parent))
from common import DUE_FOR_ANALYZE, drop_database, free_port, fresh_database, machine  # noqa: E402

from kesher.accounts import service as accounts  # noqa: E402
from kesher.contacts.service import build_input  # noqa: E402
from kesher.contacts.upsert import upsert_contacts  # noqa: E402
from kesher.db import Database  # noqa: E402
from kesher.db.migrate import upgrade  # noqa: E402
from kesher.demo.generator import contacts, events  # noqa: E402

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


def run(backend: str, n_contacts: int, bodies: list[bytes], total: int, workers: int = 1, clients: int = 1) -> None:
    url = fresh_database(backend)
    port = free_port()
    env = {**os.environ, "KESHER_DATABASE_URL": url, "KESHER_QUEUE": "immediate"}
    server = None
    log = tempfile.TemporaryFile()  # the server's own messages, shown when a call fails
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
        server = subprocess.Popen([kesher, "serve", "--port", str(port), "--no-worker", "--workers", str(workers)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=log)
        base_url = f"http://127.0.0.1:{port}/api/v1"
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        for _ in range(200):
            try:
                httpx.get(f"{base_url}/openapi.json")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        latencies: list[float] = []
        accepted = 0
        lock = threading.Lock()
        calls = iter(bodies)

        def caller() -> None:
            nonlocal accepted
            with httpx.Client(base_url=base_url, headers=headers, timeout=120) as own:
                while True:
                    with lock:
                        body = next(calls, None)
                        if body is not None and analyze is not None:
                            with analyze.connect() as conn:
                                for table in conn.execute(DUE_FOR_ANALYZE).scalars().all():
                                    conn.execute(text(f'ANALYZE "{table}"'))
                    if body is None:
                        return
                    t = time.perf_counter()
                    answer = own.post("/events", content=body)
                    took = time.perf_counter() - t
                    if answer.is_error:
                        log.seek(0)
                        raise SystemExit(f"{backend}: {answer.status_code} {answer.text[:300]}\n"
                                         f"{log.read().decode(errors='replace')[-3000:]}")
                    report = answer.json()
                    if report["errors"]:
                        raise SystemExit(f"{backend}: rejected events: {report['errors'][:3]}")
                    with lock:
                        latencies.append(took)
                        accepted += report["accepted"]

        cpu_before = server_cpu(server.pid)
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            for done in [pool.submit(caller) for _ in range(clients)]:
                done.result()
        elapsed = time.perf_counter() - started
        cpu = server_cpu(server.pid) - cpu_before
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"{backend:10s} {accepted:,} events in {elapsed:6.1f} s = {accepted / elapsed:8,.0f} events/s; "
              f"per call of {total // len(bodies):,}: median {statistics.median(latencies) * 1000:5.0f} ms, "
              f"p99 {p99 * 1000:5.0f} ms; the server's processes used {cpu / accepted * 1e6:,.0f} µs of CPU an event")
    finally:
        if analyze is not None:
            analyze.dispose()
        if server is not None:
            server.terminate()
            server.wait(10)
        log.close()
        drop_database(url)


def server_cpu(pid: int) -> float:
    """CPU seconds (user and system) the server's processes have used so far."""
    parent = psutil.Process(pid)
    used = 0.0
    for process in [parent, *parent.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        used += times.user + times.system
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--per-call", type=int, default=1_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--order", choices=("contact", "time"), default="contact",
                        help="contact: each contact's history in turn (a backfill); time: as it happened (live)")
    cores = os.cpu_count() or 1
    parser.add_argument("--workers", type=int, default=cores,
                        help="server processes, `kesher serve --workers` (default: one per core)")
    parser.add_argument("--clients", type=int, default=0,
                        help="callers posting at the same time, each a call after another (default: one per worker)")
    args = parser.parse_args()
    clients = args.clients or args.workers
    bodies = payloads(args.contacts, args.events, args.per_call, args.order)
    total = sum(body.count(b'"type"') for body in bodies)
    print(f"machine: {machine()}")
    print(f"data: {args.contacts:,} contacts, {total:,} events of the demo shop, {args.per_call:,} a call, "
          f"{args.workers} server process{'es' if args.workers > 1 else ''}, {clients} "
          f"caller{'s' if clients > 1 else ''} at a time, in {args.order} order")
    for backend in args.backends.split(","):
        run(backend, args.contacts, bodies, total, args.workers, clients)


if __name__ == "__main__":
    main()
