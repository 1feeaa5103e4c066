"""Instructions a sent message costs, counted by valgrind: a figure that does not wander with the machine.

    .venv/bin/python bench/sending_instructions.py               # 1,000 messages counted, SQLite
    .venv/bin/python bench/sending_instructions.py --messages 2000

The companion of `sending.py`, as `ingest_instructions.py` is of `ingest_events.py`: a wall-clock
figure on a shared machine wanders by a fifth or more, so a change worth a few percent cannot be
seen in it. This sends `sending.py`'s newsletter in-process on SQLite to a sink in another process
(not counted), once a warm-up campaign alone and once the warm-up then a campaign of `--messages`
recipients, each under `valgrind --tool=callgrind`, and prints the difference per message: the
whole pass (claiming, the policy gate, rendering, MIME, the SMTP hand-over, the commits, the
`email_sent` events) and the compiling of the second campaign's content, spread over its messages.
The events are stored every 2,000 messages, as in a real pass, not every few seconds (time runs
slowly under valgrind). Under valgrind a run takes a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import update

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, free_port, instructions, machine  # noqa: E402


def prepare(database: Path, warmup: int, messages: int) -> tuple[int, int]:
    """Two campaigns of the newsletter, to `warmup` and to `messages` contacts, their outboxes written."""
    from sending import NEWSLETTER, build_audience

    from kesher.accounts.models import Workspace
    from kesher.campaigns import service
    from kesher.campaigns.schemas import CampaignIn
    from kesher.contacts import groups
    from kesher.contacts.models import ListMembership
    from kesher.db import Database
    from kesher.db.migrate import upgrade

    db = Database(f"sqlite:///{database}")
    upgrade(db.engine)
    ws, sender_id, first = build_audience(db, warmup + messages)
    with db.session() as session:  # the contacts after the first `warmup` move to a list of their own
        second = groups.create(session, ws, "list", "counted").id
        session.execute(update(ListMembership).where(ListMembership.list_id == first,
                                                     ListMembership.contact_id > warmup).values(list_id=second))
    campaigns = []
    for name, the_list in (("warm-up", first), ("counted", second)):
        with db.session() as session:
            workspace = session.get_one(Workspace, ws)
            campaign = service.create_campaign(session, workspace, CampaignIn.model_validate({
                "name": name, "sender_id": sender_id, "audience": {"lists": [the_list]},
                "variants": [{"subject": "פרסומת: מבצעי החורף כבר כאן", "html": NEWSLETTER}]}))
            service.send(session, workspace, campaign.id)
            campaigns.append(campaign.id)
    db.dispose()
    return campaigns[0], campaigns[1]


def child(database: Path, port: int, campaigns: list[int], batch: int, connections: int) -> None:
    """Send the campaigns one after the other from a copy of the database."""
    from kesher.campaigns import sending
    from kesher.config import Settings
    from kesher.db import Database
    from kesher.memory import settle

    copy = database.with_name("run.db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    shutil.copy(database, copy)
    sending.RECORD_SECONDS = 1e9  # stored by number only: see the module's docstring
    url = f"sqlite:///{copy}"
    db = Database(url)
    settings = Settings(database_url=url, smtp_port=port, secret_key="bench-secret", public_url="https://kesher.example",
                        send_batch=batch, smtp_connections=connections)
    settle()
    for campaign_id in campaigns:
        report = asyncio.run(sending.Pass(db, settings, campaign_id).run())
        if report.failed or report.deferred:
            raise SystemExit(f"campaign {campaign_id}: {report}")
    db.dispose()


def counted(database: Path, port: int, campaigns: list[int], batch: int, connections: int) -> int:
    """The instructions of a child process that sends `campaigns`."""
    return instructions(__file__, ["--child", str(database), "--port", str(port), "--campaigns",
                                   ",".join(map(str, campaigns)), "--batch", str(batch), "--connections",
                                   str(connections)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000, help="recipients of the counted campaign")
    parser.add_argument("--warmup", type=int, default=500, help="recipients of the campaign sent first, in both runs")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--campaigns", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.port, [int(c) for c in args.campaigns.split(",")], args.batch, args.connections)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    from sending import SINK

    OUT.mkdir(exist_ok=True)
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port), "pipelining", "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        with tempfile.TemporaryDirectory(dir=OUT) as folder:
            database = Path(folder) / "base.db"
            warmup, measured = prepare(database, args.warmup, args.messages)
            without = counted(database, port, [warmup], args.batch, args.connections)
            with_messages = counted(database, port, [warmup, measured], args.batch, args.connections)
    finally:
        if sink.stdin is not None:
            sink.stdin.close()
        sink.wait(timeout=30)
    print(f"machine: {machine()}")
    print(f"data: {args.messages:,} messages counted after a warm-up campaign of {args.warmup:,}; SQLite, "
          f"in-process, batches of {args.batch}, {args.connections} SMTP connections, a sink in another process")
    print(f"sending: {(with_messages - without) / args.messages:,.0f} instructions a message "
          f"({with_messages:,} with the counted campaign, {without:,} without)")


if __name__ == "__main__":
    main()
