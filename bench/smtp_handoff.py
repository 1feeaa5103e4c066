"""Sending email: building a message (with and without DKIM), then handing messages over SMTP.

Building: `build_message` for a campaign-sized message, signed and not (RSA-2048 through OpenSSL;
the key is loaded, and checked, once per process, before the timing). Handoff: messages a second `SmtpPool.deliver` hands to a local aiosmtpd sink that
discards them. The sink runs in a process of its own, so the CPU figure is the sending side's
(one core, one event loop) with the two-phase protocol: MAIL, RCPT, DATA (in one write, since the
sink offers PIPELINING unless `--no-pipelining`) and the message, one commit per wave, then each
terminating dot. The commit here stores nothing; a real one is a
database transaction.

    .venv/bin/python bench/smtp_handoff.py --messages 20000 --connections 32
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import free_port, machine  # noqa: E402

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from kesher.channels.email import DkimKey, build_message  # noqa: E402
from kesher.channels.smtp import Outgoing, SmtpPool  # noqa: E402


class Discard:
    def __init__(self, pipelining: bool) -> None:
        self.pipelining = pipelining

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: ANN001, N802
        session.host_name = hostname
        # aiosmtpd reads pipelined commands, but does not say so; the last line is its own "250 HELP".
        return [*responses[:-1], "250-PIPELINING", responses[-1]] if self.pipelining else responses

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802 - aiosmtpd's hook
        return "250 OK"


def sink(port: int, ready, pipelining: bool) -> None:  # noqa: ANN001
    from aiosmtpd.controller import Controller

    import uvloop

    controller = Controller(Discard(pipelining), hostname="127.0.0.1", port=port, loop=uvloop.new_event_loop())
    controller.start()
    ready.set()
    while True:
        time.sleep(3600)


def campaign_message(dkim: DkimKey | None) -> bytes:
    """A message the size of a newsletter: a Hebrew subject, about 6 KB of HTML and its text."""
    paragraph = "<p dir='rtl'>שלום דנה, השבוע יש לנו מבצע על ויטמינים ותוספי תזונה. <a href='https://teva.co.il/s'>למבצע</a></p>"
    return build_message(subject="מבצע סוף עונה – 20% הנחה על כל הוויטמינים", html=paragraph * 40,
                         text="שלום דנה, השבוע יש לנו מבצע על ויטמינים ותוספי תזונה.\n" * 40,
                         from_name="חנות הטבע", from_email="shop@teva.co.il", reply_to="help@teva.co.il",
                         to="dana@example.com", message_id="<kesher.1@teva.co.il>",
                         list_unsubscribe_mailto="unsubscribe+1@teva.co.il",
                         list_unsubscribe_url="https://kesher.teva.co.il/u/1.abcdefghijklmnop",
                         feedback_id="1:1:campaign:kesher", dkim=dkim)


def building() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    for label, dkim, count in (("without DKIM", None, 2000), ("with DKIM (RSA-2048)", DkimKey("teva.co.il", "k1", pem), 1000)):
        campaign_message(dkim)
        started = time.process_time()
        for _ in range(count):
            size = len(campaign_message(dkim))
        each = (time.process_time() - started) / count
        print(f"build_message {label}: {each * 1e6:,.0f} µs a message ({size:,} bytes), {1 / each:,.0f} a CPU second")


def messages(count: int) -> list[Outgoing]:
    body = build_message(subject="מבצע סוף עונה", html="<p dir='rtl'>שלום, יש לנו מבצע</p>", text="שלום, יש לנו מבצע",
                         from_name="חנות הטבע", from_email="shop@example.co.il", reply_to=None, to="dana@example.com",
                         message_id="1.bench@example.co.il", list_unsubscribe_mailto=None,
                         list_unsubscribe_url="https://kesher.example.co.il/u/x", feedback_id="1:1:kesher", dkim=None)
    return [Outgoing(i, f"bounces+{i}@example.co.il", f"contact{i}@example.com", body) for i in range(count)]


async def hand_over(port: int, batch: list[Outgoing], connections: int, wave: int) -> tuple[float, float, int]:
    """Seconds taken, CPU seconds of this process, messages sent."""
    async def commit(ids: list[int]) -> set[int]:
        return set(ids)

    sent = 0
    async with SmtpPool("127.0.0.1", port, connections=connections, local_hostname="bench.local") as pool:
        await pool.deliver(batch[:connections], commit)  # open the connections before the clock starts
        started, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(batch), wave):
            outcomes = await pool.deliver(batch[start:start + wave], commit)
            sent += sum(o.status == "sent" for o in outcomes)
        return time.perf_counter() - started, time.process_time() - cpu, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--batch", type=int, default=0, help="messages per deliver() call; default: one wave")
    parser.add_argument("--uvloop", action="store_true", help="run the sending side on uvloop")
    parser.add_argument("--no-pipelining", action="store_true", help="a server that does not offer PIPELINING")
    args = parser.parse_args()
    print(machine())
    building()
    port = free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=sink, args=(port, ready, not args.no_pipelining), daemon=True)
    server.start()
    ready.wait(30)
    batch = messages(args.messages)
    runner = asyncio.run
    if args.uvloop:
        import uvloop

        runner = uvloop.run
    seconds, cpu, sent = runner(hand_over(port, batch, args.connections, args.batch or args.connections))
    server.terminate()
    print(f"{sent:,} of {len(batch):,} messages ({len(batch[0].message):,} bytes) over {args.connections} "
          f"connections{'' if args.no_pipelining else ' with PIPELINING'} in {seconds:.2f} s: "
          f"{sent / seconds:,.0f} messages/s; the sending process used "
          f"{cpu:.2f} CPU s: {sent / cpu:,.0f} messages per CPU second")


if __name__ == "__main__":
    main()
