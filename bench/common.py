"""Shared by the benchmarks: the machine's description, fresh databases, peak memory of a process tree, and
PostgreSQL's autovacuum where the server has it off."""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
from sqlalchemy import create_engine, make_url, text

OUT = Path(__file__).parent / "out"
POSTGRES = os.environ.get("KESHER_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def instructions(script: str, args: list[str]) -> int:
    """The instructions a Python process running `script` with `args` executes, counted by valgrind's
    callgrind: the same on every run of the same code and data, whatever else the machine does."""
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, script,
                           *args], env={**os.environ, "PYTHONHASHSEED": "0"}, capture_output=True, text=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode or found is None:
        raise SystemExit(f"the counted run failed:\n{done.stderr[-3000:]}")
    return int(found.group(1))


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_database(backend: str) -> str:
    """A URL to a new, empty database of the backend."""
    OUT.mkdir(exist_ok=True)
    if backend == "sqlite":
        path = OUT / f"bench-{uuid.uuid4().hex[:8]}.db"
        return f"sqlite:///{path}"
    name = f"kesher_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    if url.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm", "-writer"):  # -writer: ingest's writer turn (db/session.py)
            Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
        return
    name = make_url(url).database
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float  # the whole process tree at its largest (the command and its worker processes)
    peak_main_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_measured(cmd: list[str], env: dict[str, str]) -> Run:
    """Run a command, sampling the resident memory of it and its children every 50 ms."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0.0, 0.0]
    done = threading.Event()

    def sample() -> None:
        ps = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                main = ps.memory_info().rss
                tree = main + sum(c.memory_info().rss for c in ps.children(recursive=True))
                peak[0], peak[1] = max(peak[0], tree), max(peak[1], main)
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    return Run(time.perf_counter() - start, peak[0] / 2**20, peak[1] / 2**20, proc.returncode, out, err)


# When autovacuum would ANALYZE a table: once more rows were written since its last ANALYZE than
# autovacuum_analyze_threshold + autovacuum_analyze_scale_factor x its rows (50 + 10% by default).
DUE_FOR_ANALYZE = text(
    "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
    "WHERE s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float "
    "+ current_setting('autovacuum_analyze_scale_factor')::float * greatest(c.reltuples, 0)")
# When it would VACUUM one: more dead rows than autovacuum_vacuum_threshold + _scale_factor x its rows
# (50 + 20%), or more rows inserted since the last than the _insert_ settings (1,000 + 20%).
DUE_FOR_VACUUM = text(
    "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
    "WHERE s.n_dead_tup > current_setting('autovacuum_vacuum_threshold')::float "
    "+ current_setting('autovacuum_vacuum_scale_factor')::float * greatest(c.reltuples, 0) "
    "OR s.n_ins_since_vacuum > current_setting('autovacuum_vacuum_insert_threshold')::float "
    "+ current_setting('autovacuum_vacuum_insert_scale_factor')::float * greatest(c.reltuples, 0)")


class StandInAutovacuum:
    """Where the PostgreSQL server runs without autovacuum (some machines here do), a thread that does
    its work in its place while the block runs: every `autovacuum_naptime` (a minute by default),
    VACUUM and ANALYZE each table that autovacuum would, by the same counts. Without it a table that
    is updated row by row (the outbox: queued, sending, sent, recorded) keeps every dead version, and
    each claim reads past all of them. Nothing where the server's autovacuum is on, or on SQLite.

    Unlike autovacuum it works unthrottled (no cost delay), on the server's cores as autovacuum would."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.active = False
        self.rounds = self.vacuums = self.analyzes = 0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StandInAutovacuum:
        if not self.url.startswith("postgresql"):
            return self
        self._engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with self._engine.connect() as conn:
            self.active = conn.execute(text("SHOW autovacuum")).scalar() != "on"
            naptime = conn.execute(text("SELECT setting::float FROM pg_settings WHERE name = 'autovacuum_naptime'")).scalar()
        if not self.active:
            self._engine.dispose()
            return self
        self.naptime = float(naptime or 60)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def round(self) -> None:
        """Vacuum and analyze what is due now."""
        started = time.perf_counter()
        with self._engine.connect() as conn:
            vacuum = set(conn.execute(DUE_FOR_VACUUM).scalars())
            analyze = set(conn.execute(DUE_FOR_ANALYZE).scalars()) - vacuum
            for table in sorted(vacuum):
                conn.execute(text(f'VACUUM (ANALYZE) "{table}"'))
            for table in sorted(analyze):
                conn.execute(text(f'ANALYZE "{table}"'))
        self.rounds += 1
        self.vacuums += len(vacuum)
        self.analyzes += len(analyze) + len(vacuum)
        self.seconds += time.perf_counter() - started

    def _run(self) -> None:
        while not self._stop.wait(self.naptime):
            self.round()

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        if self.active:
            self._engine.dispose()

    def __str__(self) -> str:
        if not self.active:
            return "autovacuum: the server's own"
        return (f"autovacuum: off on this server; the benchmark stood in for it every {self.naptime:g} s: "
                f"{self.vacuums} VACUUM and {self.analyzes} ANALYZE of tables in {self.rounds} rounds, "
                f"{self.seconds:.1f} s on the server")
