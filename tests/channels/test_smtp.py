"""The two-phase SMTP handoff against real aiosmtpd servers on loopback: exactly once, or not at all."""

import asyncio
import datetime
import ipaddress
import ssl

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from aiosmtplib.errors import SMTPResponseException

from kesher.channels.smtp import Outgoing, Replies, SmtpPool, data_bytes
from tests.channels.conftest import Recipient, wait_for

BODY = b"Subject: test\r\n\r\nfirst line\r\n.a line that starts with a dot\r\n"


def outgoing(*locals_: str) -> list[Outgoing]:
    return [Outgoing(i + 1, f"bounces+{i + 1}@teva.co.il", f"{local}@example.com", BODY)
            for i, local in enumerate(locals_)]


def allow_all():
    calls: list[list[int]] = []

    async def commit(ids: list[int]) -> set[int]:
        calls.append(ids)
        return set(ids)

    return commit, calls


def pool(server, **options) -> SmtpPool:
    return SmtpPool("127.0.0.1", server.port, connections=options.pop("connections", 4), timeout=5,
                    local_hostname="test.local", **options)


@pytest.fixture(params=[False, True], ids=["one-command-at-a-time", "pipelining"])
def smtp_server(request, smtp_server):
    """Every test here against a server without PIPELINING, then one with it (MAIL, RCPT and DATA in one write)."""

    def start(handler: Recipient | None = None, port: int | None = None, **smtp):
        handler = handler or Recipient()
        handler.pipelining = request.param
        return smtp_server(handler, port, **smtp)

    return start


def test_dot_stuffing_and_line_ends():
    assert data_bytes(b"a\n.b\r\n..c\rd") == b"a\r\n..b\r\n...c\r\nd\r\n"


def test_committed_messages_arrive_once_and_withheld_ones_never(smtp_server):
    server, handler = smtp_server()
    batch = outgoing("a", "b", "c", "d", "e", "f")

    async def commit(ids: list[int]) -> set[int]:
        return set(ids) - {2, 5}  # e.g. the throttle window is full, or another worker took them

    async def run():
        async with pool(server) as smtp:
            first = await smtp.deliver(batch, commit)
            again = await smtp.deliver(outgoing("g"), allow_all()[0])  # the connections are used again
            return first, again

    first, again = asyncio.run(run())
    assert [(o.id, o.status) for o in first] == [(1, "sent"), (2, "withheld"), (3, "sent"), (4, "sent"),
                                                 (5, "withheld"), (6, "sent")]
    assert first[0].code == 250 and again[0].status == "sent"
    wait_for(lambda: len(handler.received) == 5)
    assert sorted(e.rcpt_tos[0] for e in handler.received) == [f"{x}@example.com" for x in "acdfg"]
    assert all(e.mail_from.startswith("bounces+") for e in handler.received)
    assert handler.received[0].content == BODY  # the server undid the dot-stuffing


def test_4xx_defers_5xx_fails_and_only_ready_messages_are_committed(smtp_server):
    server, handler = smtp_server(Recipient(rcpt={"busy": "454 4.7.0 throttling", "nobody": "550 5.1.1 no such user"},
                                            after_dot={"spam": "554 5.7.1 looks like spam"}))
    commit, calls = allow_all()
    outcomes = asyncio.run(_deliver(server, outgoing("busy", "nobody", "dana", "spam"), commit))
    by_id = {o.id: o for o in outcomes}
    assert (by_id[1].status, by_id[1].code, by_id[1].text) == ("deferred", 454, "4.7.0 throttling")
    assert (by_id[2].status, by_id[2].code, by_id[2].text) == ("failed", 550, "5.1.1 no such user")
    assert by_id[3].status == "sent"
    # Refused after the dot: committed (so "sent"), with the refusal, so the caller can correct its row.
    assert (by_id[4].status, by_id[4].code, by_id[4].text) == ("sent", 554, "5.7.1 looks like spam")
    assert calls == [[3, 4]]
    wait_for(lambda: handler.received)
    assert [e.rcpt_tos for e in handler.received] == [["dana@example.com"]]


async def _deliver(server, batch, commit, **options):
    async with pool(server, **options) as smtp:
        return await smtp.deliver(batch, commit)


def test_a_batch_larger_than_the_pool_goes_in_waves_one_commit_each(smtp_server):
    server, handler = smtp_server()
    commit, calls = allow_all()
    outcomes = asyncio.run(_deliver(server, outgoing(*"abcde"), commit, connections=2))
    assert [o.status for o in outcomes] == ["sent"] * 5
    assert calls == [[1, 2], [3, 4], [5]]
    wait_for(lambda: len(handler.received) == 5)


def test_the_handoff_works_on_uvloop_too(smtp_server):
    """uvloop (which uvicorn runs on where it is installed) has transports of its own classes."""
    uvloop = pytest.importorskip("uvloop")
    server, handler = smtp_server()
    commit, calls = allow_all()
    outcomes = uvloop.run(_deliver(server, outgoing(*"abc"), commit, connections=2))
    assert [o.status for o in outcomes] == ["sent"] * 3
    wait_for(lambda: len(handler.received) == 3)


def test_a_connection_lost_before_the_commit_defers_and_delivers_nothing(smtp_server):
    server, handler = smtp_server()

    async def commit(ids: list[int]) -> set[int]:
        server.stop()  # the server goes away with every message written but not ended
        await asyncio.sleep(0.3)
        return set(ids)

    outcomes = asyncio.run(_deliver(server, outgoing("a", "b"), commit))
    assert [o.status for o in outcomes] == ["deferred", "deferred"]
    assert "before the end of data" in outcomes[0].text
    assert handler.received == []


def test_a_worker_dying_in_its_commit_leaves_nothing_delivered(smtp_server):
    server, handler = smtp_server()

    async def commit(ids: list[int]) -> set[int]:
        raise RuntimeError("the database went away")

    async def run():
        async with pool(server) as smtp:
            with pytest.raises(RuntimeError):
                await smtp.deliver(outgoing("a", "b"), commit)
            return await smtp.deliver(outgoing("c"), allow_all()[0])  # fresh connections replace the dropped ones

    assert [o.status for o in asyncio.run(run())] == ["sent"]
    wait_for(lambda: handler.received)
    asyncio.run(asyncio.sleep(0.2))
    assert [e.rcpt_tos for e in handler.received] == [["c@example.com"]]


def test_a_connection_the_server_closed_while_idle_is_replaced(smtp_server):
    server, handler = smtp_server()

    async def run():
        async with pool(server, connections=1) as smtp:
            await smtp.deliver(outgoing("a"), allow_all()[0])
            server.stop()  # closes the kept connection
            await asyncio.sleep(0.2)
            smtp_server(handler, port=server.port)
            return await smtp.deliver(outgoing("b"), allow_all()[0])

    assert [o.status for o in asyncio.run(run())] == ["sent"]
    wait_for(lambda: len(handler.received) == 2)


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def test_replies_are_read_whole_however_they_arrive():
    async def run():
        replies = Replies(_Transport())
        for chunk in (b"250 OK\r\n250", b"-first\r\n250-second\r", b"\n250 last\r\n354 go on\r\n", b"55"):
            replies.data_received(chunk)
        got = [await replies.reply() for _ in range(3)]
        waiting = asyncio.ensure_future(replies.reply())
        await asyncio.sleep(0)
        replies.data_received(b"0 5.1.1 no such user\r\n")
        got.append(await waiting)
        replies.data_received(b"hello\r\n")  # not a reply: the connection is out of step and closed
        with pytest.raises(SMTPResponseException):
            await replies.reply()
        return got, replies.transport.closed

    got, closed = asyncio.run(run())
    assert got == [(250, "OK"), (250, "first\nsecond\nlast"), (354, "go on"), (550, "5.1.1 no such user")]
    assert closed


def test_a_shorter_deadline_than_the_last_step_s_is_kept():
    """A step with less time (QUIT has at most 5 s) must not wait for the timer of a longer step before it."""
    async def run():
        replies = Replies(_Transport())
        replies.expect_by(30)
        waiting = asyncio.ensure_future(replies.reply())
        await asyncio.sleep(0)  # the read waits: the connection's timer is set for 30 s from now
        replies.data_received(b"250 OK\r\n")
        assert await waiting == (250, "OK")
        replies.expect_by(0.1)
        late = asyncio.ensure_future(replies.reply())
        await asyncio.wait({late}, timeout=5)
        return late.done() and isinstance(late.exception(), TimeoutError)

    assert asyncio.run(run())


def test_pipelining_is_used_where_the_server_offers_it(smtp_server):
    server, _ = smtp_server()

    async def run():
        async with pool(server, connections=1) as smtp:
            await smtp.deliver(outgoing("a"), allow_all()[0])
            return smtp._pool[0].pipelining

    assert asyncio.run(run()) is server.handler.pipelining


def test_with_pipelining_the_next_message_s_commands_go_with_the_dot(smtp_server, monkeypatch):
    server, handler = smtp_server(Recipient(rcpt={"busy": "454 4.7.0 throttling"},
                                            after_dot={"spam": "554 5.7.1 looks like spam"}))
    writes: list[bytes] = []
    write = Replies.write

    def spy(self, data: bytes) -> None:
        writes.append(data)
        write(self, data)

    monkeypatch.setattr(Replies, "write", spy)
    commit, calls = allow_all()
    outcomes = asyncio.run(_deliver(server, outgoing("a", "busy", "spam", "b", "c"), commit, connections=1))
    assert [(o.status, o.code) for o in outcomes] == [("sent", 250), ("deferred", 454), ("sent", 554), ("sent", 250),
                                                      ("sent", 250)]
    assert calls == [[1], [3], [4], [5]]
    wait_for(lambda: len(handler.received) == 3)
    assert [e.rcpt_tos for e in handler.received] == [["a@example.com"], ["b@example.com"], ["c@example.com"]]
    # The dot of "a" carries the refused "busy"'s commands; the dot of "spam", refused after it, carries "b"'s.
    ahead = [w for w in writes if w.startswith(b".\r\nMAIL FROM:")]
    if server.handler.pipelining:
        assert [w.split(b"RCPT TO:<")[1].split(b"@")[0] for w in ahead] == [b"busy", b"b", b"c"]
    else:
        assert ahead == []


class _RefuseAndClose(asyncio.Protocol):
    """A server that offers PIPELINING, answers MAIL with 421 and closes at once, as a busy relay does."""

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(b"220 busy.example ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        for line in data.split(b"\r\n"):
            if line.upper().startswith(b"EHLO"):
                self.transport.write(b"250-busy.example\r\n250 PIPELINING\r\n")
            elif line.upper().startswith(b"MAIL"):
                self.transport.write(b"421 4.7.0 too many connections, closing\r\n")
                self.transport.close()
                return


def test_a_pipelined_refusal_before_the_server_closes_is_the_outcome():
    async def run():
        server = await asyncio.get_running_loop().create_server(_RefuseAndClose, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, SmtpPool("127.0.0.1", port, connections=1, timeout=5, local_hostname="test.local") as smtp:
            return await smtp.deliver(outgoing("a"), allow_all()[0])

    [outcome] = asyncio.run(run())
    assert (outcome.status, outcome.code, outcome.text) == ("deferred", 421, "4.7.0 too many connections, closing")


class _Silent(asyncio.Protocol):
    """A server that stops answering at one step: at MAIL ("mail") or after the end of data ("dot")."""

    def __init__(self, at: str, pipelining: bool) -> None:
        self.at, self.pipelining, self.in_data, self.buffer = at, pipelining, False, b""

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(b"220 slow.example ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                self.buffer, self.in_data = self.buffer[end + 5:], False
                if self.at != "dot":
                    self.transport.write(b"250 queued\r\n")
                continue
            line, found, self.buffer = self.buffer.partition(b"\r\n")
            if not found:
                self.buffer = line
                return
            command = line[:4].upper()
            if command == b"EHLO":
                self.transport.write(b"250-slow.example\r\n250 PIPELINING\r\n" if self.pipelining
                                     else b"250 slow.example\r\n")
            elif command == b"MAIL" and self.at == "mail":
                continue
            elif command in (b"MAIL", b"RCPT"):
                self.transport.write(b"250 OK\r\n")
            elif command == b"DATA":
                self.transport.write(b"354 go on\r\n")
                self.in_data = True
            elif command == b"QUIT":
                self.transport.write(b"221 bye\r\n")


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-command-at-a-time", "pipelining"])
@pytest.mark.parametrize("at", ["mail", "dot"])
def test_a_server_that_stops_answering_is_given_up_on_after_the_timeout(at, pipelining):
    """Silent before the end of data: nothing was committed, the message is deferred. Silent after the
    dot: it may have arrived, so it is taken as sent (never twice), and its connection is not used again."""
    async def run():
        server = await asyncio.get_running_loop().create_server(lambda: _Silent(at, pipelining), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        commit, calls = allow_all()
        async with server, SmtpPool("127.0.0.1", port, connections=1, timeout=0.3, local_hostname="test.local") as smtp:
            outcomes = await smtp.deliver(outgoing("a"), commit)
            return outcomes, calls, smtp._pool[0].is_open

    [outcome], calls, still_open = asyncio.run(asyncio.wait_for(run(), 10))
    if at == "mail":
        assert (outcome.status, calls) == ("deferred", [])
    else:
        assert (outcome.status, outcome.code, calls) == ("sent", None, [[1]])
        assert outcome.text.startswith("no reply after the end of data")
    assert not still_open


def test_a_connection_idle_longer_than_the_timeout_is_used_again(smtp_server):
    """The timeout bounds each step of a transaction, not the life of a connection."""
    server, handler = smtp_server()

    async def run():
        async with SmtpPool("127.0.0.1", server.port, connections=1, timeout=0.3, local_hostname="test.local") as smtp:
            first = await smtp.deliver(outgoing("a"), allow_all()[0])
            connection = smtp._pool[0]
            await asyncio.sleep(0.5)
            second = await smtp.deliver(outgoing("b"), allow_all()[0])
            return first + second, smtp._pool[0] is connection and connection.is_open

    outcomes, same = asyncio.run(run())
    assert [(o.status, o.code) for o in outcomes] == [("sent", 250), ("sent", 250)] and same
    wait_for(lambda: len(handler.received) == 2)


def test_nothing_listening_defers(free_port):
    outcomes = asyncio.run(_deliver(type("S", (), {"port": free_port()}), outgoing("a"), allow_all()[0]))
    assert outcomes[0].status == "deferred" and "cannot connect" in outcomes[0].text


# TLS -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (server context, client context trusting it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kesher test smtp")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    client = ssl.create_default_context(cafile=str(folder / "cert.pem"))
    return server, client


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"kesher", b"s3cret")
    return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535 itself


def test_starttls_with_auth(smtp_server, certificate):
    server_tls, client_tls = certificate
    server, handler = smtp_server(tls_context=server_tls, require_starttls=True, auth_required=True,
                                  authenticator=authenticator)
    outcomes = asyncio.run(_deliver(server, outgoing("a"), allow_all()[0], security="starttls", username="kesher",
                                    password="s3cret", tls_context=client_tls))
    assert outcomes[0].status == "sent", outcomes
    wait_for(lambda: handler.received)

    refused = asyncio.run(_deliver(server, outgoing("b"), allow_all()[0], security="starttls", username="kesher",
                                   password="wrong", tls_context=client_tls))
    assert refused[0].status == "deferred" and refused[0].code == 535
    untrusted = asyncio.run(_deliver(server, outgoing("c"), allow_all()[0], security="starttls"))
    assert untrusted[0].status == "deferred" and "cannot connect" in untrusted[0].text
    assert len(handler.received) == 1


def test_implicit_tls(smtp_server, certificate):
    server_tls, client_tls = certificate
    server, handler = smtp_server(ssl_context=server_tls)
    outcomes = asyncio.run(_deliver(server, outgoing("a"), allow_all()[0], security="tls", tls_context=client_tls))
    assert outcomes[0].status == "sent", outcomes
    wait_for(lambda: handler.received)
