"""A campaign to a large audience, rendered and handed to a local SMTP server by one worker process.

    .venv/bin/python bench/sending.py                          # 1,000,000 recipients, SQLite
    .venv/bin/python bench/sending.py --recipients 50000 --backend postgresql
    .venv/bin/python bench/sending.py --recipients 20000 --dkim # with RSA-2048 DKIM signatures
    .venv/bin/python bench/sending.py --recipients 20000 --past-campaigns 50  # a year of weekly newsletters

What is measured is Kesher's own pipeline without the network: claim from the outbox, the policy
gate at send time, personalisation data, rendering (Jinja2 sandbox, CSS inlining, text part, link
tracking), MIME building, the two-phase SMTP hand-over to a sink on loopback (in a separate process,
which accepts and discards), recording `sent` before each end-of-data, and the `email_sent` events.
Targets (issue 5): 2,000 messages/s per process, peak RSS under 200 MB whatever the audience size.

The audience is built directly in the database (contacts with email consent in one list), then the
campaign is created and sent through the same services the API uses. On a PostgreSQL server whose
autovacuum is off, the benchmark vacuums and analyzes each table when autovacuum would
(`common.StandInAutovacuum`): without it every update of the outbox leaves a dead row version behind,
and at a million recipients each claim read past hundreds of thousands of them (617 messages/s by
the 700,000th message, against 1,527 over the whole million with the stand-in).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).parent))
from common import StandInAutovacuum, drop_database, fresh_database, machine  # noqa: E402

from kesher.accounts import service as accounts  # noqa: E402
from kesher.accounts.models import Workspace  # noqa: E402
from kesher.campaigns import service  # noqa: E402
from kesher.campaigns.schemas import CampaignIn  # noqa: E402
from kesher.campaigns.sending import Pass  # noqa: E402
from kesher.channels import senders  # noqa: E402
from kesher.config import Settings  # noqa: E402
from kesher.memory import settle  # noqa: E402
from kesher.contacts import groups  # noqa: E402
from kesher.contacts.models import Consent, Contact, ListMembership  # noqa: E402
from kesher.db import Database  # noqa: E402
from kesher.db.migrate import upgrade  # noqa: E402
from kesher.events.models import CampaignReceipt, ContactRollup, Event, PurchaseItem  # noqa: E402
from kesher.segments import service as segments  # noqa: E402

CHUNK = 20_000
LINES_CHUNK = 20_000  # purchase lines inserted at a time
FIRST_NAMES = ["דנה", "יוסי", "מרים", "אברהם", "שרה", "משה", "רחל", "דוד", "נועה", "איתי"]
CITIES = ["תל אביב", "חיפה", "ירושלים", "באר שבע", "נתניה"]
NEWSLETTER = """<style>
  .hero { background: #f4efe6; padding: 24px; border-radius: 8px; }
  .hero h1 { color: #2d3a4a; font-size: 26px; margin: 0 0 8px; }
  .cta { background: #c0392b; color: #ffffff; padding: 12px 22px; border-radius: 6px; text-decoration: none; }
  .product td { padding: 8px; border-bottom: 1px solid #eee; }
  p { line-height: 1.6; font-size: 16px; }
</style>
<div class="hero">
  <h1>שלום [[שם פרטי|חבר/ה]], החורף הגיע</h1>
  <p>אספנו בשבילך את מה שהכי עוזר בימים הקרים: ויטמין D, שמיכות חימום ונעלי בית נגד החלקה.</p>
  <p><a class="cta" href="https://shop.example.co.il/winter">לכל מבצעי החורף</a></p>
</div>
{% for i in range(8) %}
<table class="product" width="100%"><tr>
  <td><img src="https://shop.example.co.il/img/p{{ i }}.jpg" alt="מוצר {{ i }}" width="120"></td>
  <td><p><strong>מוצר חורף מספר {{ i }}</strong> — תיאור קצר של המוצר, למה הוא טוב לקשישים ולמשפחות שלהם,
      ואיך משתמשים בו נכון כדי ליהנות ממנו לאורך זמן. משלוח חינם מעל 200 ש"ח.</p>
      <p><a href="https://shop.example.co.il/p/{{ i }}">לפרטים ולהזמנה</a></p></td>
</tr></table>
{% endfor %}
<p>{{ contact.city | default("") }} — יש לנו משלוחים לכל הארץ. שאלות? פשוט עונים למייל הזה.</p>
"""
PRODUCTS = """<h2>קניתם לאחרונה</h2>
{{ products.last_bought }}
<h2>אולי יעניין אותך גם</h2>
{{ products.same_category(3) }}
"""
# A sink that speaks just enough SMTP to take messages and discard them, cheaply: aiosmtpd reads a
# message line by line in Python and would be the slower side of the benchmark, not Kesher. Like
# Postfix, Exim and the big providers, it offers PIPELINING unless told not to.
SINK = """
import asyncio, sys
count = 0
EXTENSIONS = b"250-PIPELINING\\r\\n" if sys.argv[2] == "pipelining" else b""
DELAY = float(sys.argv[3]) / 1000  # each reply this long after its command: a network's round trip
class Sink(asyncio.Protocol):
    def connection_made(self, transport):
        self.t, self.buf, self.data, self.due = transport, b"", False, 0.0
        self.reply(b"220 sink ESMTP\\r\\n")
    def reply(self, data):
        if not DELAY:
            return self.t.write(data)
        loop = asyncio.get_running_loop()
        self.due = max(loop.time() + DELAY, self.due + 1e-6)  # in order, as TCP keeps them
        loop.call_at(self.due, lambda: self.t.is_closing() or self.t.write(data))
    def data_received(self, chunk):
        global count
        self.buf += chunk
        while True:
            if self.data:
                end = self.buf.find(b"\\r\\n.\\r\\n")
                if end < 0:
                    self.buf = self.buf[-4:]  # a terminator may be split between two reads
                    return
                self.buf, self.data = self.buf[end + 5:], False
                count += 1
                self.reply(b"250 2.0.0 OK\\r\\n")
                continue
            line, sep, rest = self.buf.partition(b"\\r\\n")
            if not sep:
                return
            self.buf = rest
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.reply(b"250-sink\\r\\n" + EXTENSIONS + b"250 8BITMIME\\r\\n")
            elif verb == b"DATA":
                self.data = True
                self.buf = b"\\r\\n" + self.buf
                self.reply(b"354 go on\\r\\n")
            elif verb == b"QUIT":
                self.t.write(b"221 bye\\r\\n")
                self.t.close()
                return
            else:
                self.reply(b"250 OK\\r\\n")
async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Sink, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    print(count, flush=True)
asyncio.run(main())
"""


def build_audience(db: Database, n: int, past: int = 0, bought: int = 0) -> tuple[int, int, int]:
    """A workspace, a sender and a list of `n` contacts with email consent, each sent `past` campaigns
    before (their receipts and rollups, every third opened) and with an order of `bought` lines (of
    40 products in 5 categories); (workspace, sender, list) ids."""
    now = datetime.now(UTC)
    with db.session() as session:
        workspace = accounts.create_workspace(session, "Bench shop")
        sender = senders.create_sender(session, workspace.id, name="חנות הדוגמה", email="news@shop.example.co.il",
                                       address="רחוב הרצל 1, תל אביב")
        the_list = groups.create(session, workspace.id, "list", "newsletter")
        ids = (workspace.id, sender.id, the_list.id)
    ws, _, list_id = ids
    for start in range(1, n + 1, CHUNK):
        rows = range(start, min(start + CHUNK, n + 1))
        with db.session() as session:
            session.execute(insert(Contact), [
                {"id": i, "workspace_id": ws, "email": f"person{i}@example.com", "first_name": FIRST_NAMES[i % 10],
                 "city": CITIES[i % 5], "language": "he", "timezone": "Asia/Jerusalem", "created_at": now,
                 "updated_at": now} for i in rows])
            session.execute(insert(Consent), [
                {"contact_id": i, "channel": "email", "workspace_id": ws, "status": "granted", "source": "bench",
                 "changed_at": now} for i in rows])
            session.execute(insert(ListMembership), [
                {"list_id": list_id, "contact_id": i, "workspace_id": ws, "added_at": now} for i in rows])
            if past:
                session.execute(insert(ContactRollup), [
                    {"contact_id": i, "workspace_id": ws, "sent_count": past, "last_event_at": now} for i in rows])
            if bought:
                session.execute(insert(Event), [
                    {"id": i, "workspace_id": ws, "contact_id": i, "type": "purchase", "ts": now, "received_at": now,
                     "source": "bench", "properties": {}} for i in rows])
                # A few thousand contacts' lines at a time, so that the peak RSS printed is the sending's.
                for part in range(rows.start, rows.stop, LINES_CHUNK // bought + 1):
                    session.execute(insert(PurchaseItem), [
                        {"event_id": i, "workspace_id": ws, "contact_id": i, "ts": now - timedelta(days=k),
                         "sku": f"SKU-{(i * 7 + k) % 40}", "name": "מוצר", "category": f"cat{k % 5}", "price": 49.9,
                         "quantity": 1.0}
                        for i in range(part, min(part + LINES_CHUNK // bought + 1, rows.stop)) for k in range(bought)])
            for k in range(past):
                sent = now - timedelta(days=7 * (past - k))
                session.execute(insert(CampaignReceipt), [
                    {"contact_id": i, "campaign_id": f"past-{k}", "workspace_id": ws, "sent_at": sent,
                     "first_open_at": sent if (i + k) % 3 == 0 else None} for i in rows])
    if bought and db.dialect == "postgresql":  # the orders were given their ids: the sequence goes on after them
        with db.session() as session:
            session.execute(text("SELECT setval('events_id_seq', (SELECT max(id) FROM events))"))
    return ids


def _build_audience(url: str, n: int, past: int, bought: int) -> tuple[int, int, int]:
    db = Database(url)
    try:
        return build_audience(db, n, past, bought)
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--dkim", action="store_true", help="sign every message (RSA-2048)")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--past-campaigns", type=int, default=0,
                        help="campaigns each recipient was sent before, a week apart (a workspace in use)")
    parser.add_argument("--past-purchases", type=int, default=0,
                        help="lines each recipient bought before (products for templates that show them)")
    parser.add_argument("--products", action="store_true",
                        help="the newsletter shows what each recipient bought and best sellers of those categories")
    parser.add_argument("--segments", action="store_true",
                        help="the workspace has a segment of each preset, kept current as the sends are recorded")
    parser.add_argument("--no-pipelining", action="store_true", help="a sink that does not offer PIPELINING")
    parser.add_argument("--rtt", type=float, default=0.0,
                        help="milliseconds the sink waits before each reply, as a relay across a network would")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    print(f"recipients: {args.recipients:,} on {args.backend}, each sent {args.past_campaigns} campaigns before "
          f"and having bought {args.past_purchases} lines; "
          f"{'a segment of each preset; ' if args.segments else ''}{'products shown; ' if args.products else ''}"
          f"DKIM {'on' if args.dkim else 'off'}; "
          f"the sink {'does not offer' if args.no_pipelining else 'offers'} PIPELINING"
          + (f" and replies {args.rtt:g} ms after each command" if args.rtt else ""))
    url = fresh_database(args.backend)
    db = Database(url)
    upgrade(db.engine)
    port = 20000 + (psutil.Process().pid % 20000)
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port), "plain" if args.no_pipelining else "pipelining",
                             str(args.rtt)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        started = time.perf_counter()
        # Built by another process, as the API or an import would: the RSS measured is a worker's.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as builder:
            ws, sender_id, list_id = builder.submit(_build_audience, url, args.recipients, args.past_campaigns,
                                                    args.past_purchases).result()
        print(f"audience built in {time.perf_counter() - started:.1f} s")
        with db.session() as session:
            workspace = session.get_one(Workspace, ws)
            if args.dkim:
                senders.generate_dkim_key(session, ws, sender_id, "bench")
            if args.segments:
                for key, preset in segments.PRESETS.items():
                    if not preset.params:
                        segments.create_from_preset(session, workspace, key)
            campaign = service.create_campaign(session, workspace, CampaignIn.model_validate({
                "name": "winter", "sender_id": sender_id, "audience": {"lists": [list_id]},
                "variants": [{"subject": "פרסומת: מבצעי החורף כבר כאן",
                              "html": NEWSLETTER + (PRODUCTS if args.products else "")}]}))
            campaign_id = campaign.id
        started = time.perf_counter()
        with db.session() as session:
            service.send(session, session.get_one(Workspace, ws), campaign_id)
        print(f"outbox written (audience through the policy gate, one INSERT ... SELECT): "
              f"{time.perf_counter() - started:.1f} s")

        settings = Settings(database_url=url, smtp_port=port, secret_key="bench-secret", public_url="https://kesher.example",
                            send_batch=args.batch, smtp_connections=args.connections)
        process = psutil.Process()
        samples: list[tuple[float, float]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                samples.append((time.perf_counter(), process.memory_info().rss / 2**20))

        sampler = threading.Thread(target=sample, daemon=True)
        settle()  # as `kesher worker` does once it has started
        rss_before = process.memory_info().rss / 2**20
        sampler.start()
        with StandInAutovacuum(url) as autovacuum:
            if autovacuum.active:  # what autovacuum would have done while the audience was built
                autovacuum.round()
            started, cpu = time.perf_counter(), process.cpu_times()
            report = asyncio.run(Pass(db, settings, campaign_id).run())
            elapsed = time.perf_counter() - started
            cpu_after = process.cpu_times()
        busy = (cpu_after.user - cpu.user) + (cpu_after.system - cpu.system)
        done.set()
        sampler.join()
    finally:
        if sink.poll() is None and sink.stdin is not None:
            sink.stdin.close()
        received = sink.stdout.read().strip() if sink.stdout else "?"
        sink.wait(timeout=30)
        db.dispose()
        if not args.keep:
            drop_database(url)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"sent {report.sent:,} (sink received {received}), deferred {report.deferred}, failed {report.failed}, "
          f"skipped {report.skipped}")
    print(f"sending: {elapsed:.1f} s, {report.sent / elapsed:,.0f} messages/s (target 2,000); "
          f"the process was busy {busy / elapsed:.0%} of that time ({busy / max(report.sent, 1) * 1000:.3f} ms "
          f"of CPU a message)")
    print(f"RSS: {rss_before:.0f} MB before sending, peak {peak:.0f} MB (target under 200 MB)")
    if args.backend == "postgresql":
        print(autovacuum)
    if samples:
        t0 = samples[0][0]
        marks = [samples[int(len(samples) * q)] for q in (0.1, 0.25, 0.5, 0.75)] + [samples[-1]]
        print("RSS while sending: " + ", ".join(f"{t - t0:.0f} s {mb:.0f} MB" for t, mb in marks))


if __name__ == "__main__":
    main()
