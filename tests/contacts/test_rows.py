"""Checking import rows in worker processes: the same result as in the writing process, and lean workers."""

import subprocess
import sys
import textwrap
from pathlib import Path

from kesher.contacts.columns import plan_columns
from kesher.contacts.rows import RowPlan, prepare, prepared

HEADERS = ["שם פרטי", "טלפון", "אימייל", "תאריך לידה"]
ROWS = [(n, [f"שם {n}", f"050-{1000000 + n}", f"person{n}@example.co.il" if n % 7 else "not an email",
             "12/03/1950" if n % 5 else "31/02/1950"]) for n in range(2, 503)]


def test_rows_checked_in_worker_processes_come_back_as_checked_here_and_in_order():
    plan = RowPlan.build(plan_columns(HEADERS, {}, None), {}, "IL")
    serial = prepare(plan, ROWS)
    batches = list(prepared(plan, iter(ROWS), 50, processes=2))
    assert [count for count, _ in batches] == [50] * 10 + [1]
    parallel = [item for _, items in batches for item in items]
    assert [(i.ref, i.values, [e.message for e in i.errors]) for i in parallel] == \
           [(i.ref, i.values, [e.message for e in i.errors]) for i in serial]
    assert any(i.errors for i in parallel) and any(not i.errors for i in parallel)


def test_worker_processes_do_not_run_the_script_that_started_the_import(tmp_path: Path):
    """A worker that ran the `kesher` command's script would load the whole application first."""
    marker = tmp_path / "ran"
    script = tmp_path / "command.py"
    script.write_text(textwrap.dedent(f"""
        from pathlib import Path
        with Path({str(marker)!r}).open("a") as fh:
            fh.write("script\\n")
        from kesher.contacts.columns import plan_columns
        from kesher.contacts.rows import RowPlan, prepared
        if __name__ == "__main__":
            plan = RowPlan.build(plan_columns(["אימייל"], {{}}, None), {{}}, "IL")
            rows = [(n, [f"p{{n}}@example.co.il"]) for n in range(2, 102)]
            print(sum(len(items) for _, items in prepared(plan, iter(rows), 10, processes=2)))
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "100"
    assert marker.read_text() == "script\n"
