"""`make bench`: every benchmark at its issue's full size (long: tens of minutes on two cores).

    .venv/bin/python bench/run.py            # all
    .venv/bin/python bench/run.py --quick    # a tenth of the data, to check they run
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHES = {
    "import_contacts.py": ["--contacts", "1000000"],
    "ingest_events.py": ["--contacts", "100000", "--events", "1000000"],
    "segments.py": ["--contacts", "1000000", "--events", "10000000"],
    "sending.py": ["--recipients", "1000000"],
}
QUICK = {
    "import_contacts.py": ["--contacts", "100000"],
    "ingest_events.py": ["--contacts", "10000", "--events", "100000"],
    "segments.py": ["--contacts", "20000", "--events", "200000"],
    "sending.py": ["--recipients", "20000"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for script, options in (QUICK if args.quick else BENCHES).items():
        print(f"== {script} {' '.join(options)}", flush=True)
        subprocess.run([sys.executable, "-u", str(HERE / script), *options], check=True)


if __name__ == "__main__":
    main()
