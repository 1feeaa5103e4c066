"""Shared by the benchmarks: the machine's description, fresh databases, peak memory of a process tree."""

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
