"""Handing email to an SMTP server so that each message is sent once, crashes included.

`SmtpPool.deliver` is two-phase. Phase one, on each of the pool's connections at once: MAIL FROM,
RCPT TO, DATA, then the whole message, but not the `<CRLF>.<CRLF>` that ends it. The caller's
`commit` then marks the ready messages sent in its database and says which of them may go. Phase
two: the terminating dot (and the server's final reply) for those, and the end of the transaction
without a dot for the others. A server takes responsibility for a message only at that dot
(RFC 5321 §4.1.1.4), so:

- a worker killed before the commit leaves messages no server accepted, safe to send again;
- a worker killed after the commit has its messages marked sent; each dot is written to the
  socket at once, so the server gets it even if the process dies a moment later.

At worst a message is lost, never sent twice: a worker killed between the commit and the dots loses
that wave (one message per connection at most). The window is the microseconds between the commit
returning and the writes, and on PostgreSQL also the commit itself (a fraction of a millisecond),
which the server completes even if its client dies meanwhile.

An SMTP connection carries one transaction at a time, so a message held open before the commit
occupies a connection: `deliver` works in waves of at most `connections` messages, one `commit`
per wave. A batch no larger than the pool is one wave, and one commit.

A transaction already in DATA cannot be cancelled with RSET (the server would read "RSET" as a line
of the message). A withheld message's connection is therefore closed without the dot, which makes
the server discard what it got (RFC 5321 §4.1.1.4 again), and is opened again on its next use.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import aiosmtplib
from aiosmtplib.errors import SMTPException, SMTPHeloError, SMTPResponseException

log = logging.getLogger("kesher.smtp")

SECURITY = ("none", "starttls", "tls")
# An envelope address goes into a command line as is: nothing that could end or split the line.
ENVELOPE_ADDRESS = re.compile(r"^[^\s<>]+@[^\s<>@]+$")
LINE_ENDINGS = re.compile(rb"\r\n|\r|\n")
LEADING_DOT = re.compile(rb"(?m)^\.")
END_OF_DATA = b".\r\n"
MAX_REPLY_LINE = 4096  # RFC 5321 §4.5.3.1.5 allows 512 octets

Status = Literal["sent", "deferred", "failed", "withheld"]
Commit = Callable[[list[int]], Awaitable[set[int]]]


@dataclass
class Outgoing:
    """A message to hand over: its outbox id, the envelope (Return-Path and recipient) and its bytes."""

    id: int
    mail_from: str
    to: str
    message: bytes


@dataclass
class Outcome:
    """What became of one message.

    - `sent`: committed, and its end of data written. `code` is the server's final reply: 250 when
      it took the message; 4xx or 5xx when it refused it after all (the caller corrects the row it
      marked sent); None when no reply came (taken as delivered, so it never goes twice).
    - `deferred`: not delivered, may be sent again (a 4xx, or the connection failed before the end;
      when that happened after the commit, the caller puts back the row it marked sent).
    - `failed`: refused with a 5xx before the end of data; must not be sent again.
    - `withheld`: ready, but `commit` did not allow it; not delivered.
    """

    id: int
    status: Status
    code: int | None = None
    text: str = ""


class NotEnded(Exception):
    """The connection closed before the terminating dot could be written: the server kept nothing."""


class Refused(Exception):
    """The server answered a command with something other than what lets the transaction go on."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)
        self.code, self.text = code, text

    def outcome(self, message_id: int) -> Outcome:
        return Outcome(message_id, "failed" if 500 <= self.code < 600 else "deferred", self.code, self.text)


class DataReady(bytes):
    """A message known to be in the form DATA carries (see `data_bytes`), so it is not scanned again:
    `email.build_message` writes its messages so, and checking a 25 KB message took 60 us."""


def data_bytes(message: bytes) -> bytes:
    """The message as DATA carries it: CRLF line ends, a dot doubled at the start of a line
    (RFC 5321 §4.5.2), ending in CRLF; without the terminating dot."""
    if isinstance(message, DataReady):
        return message
    data = message
    # Kesher builds messages with CRLF line ends and base64 bodies, where both rewrites find nothing:
    # looking in C first spares two regular-expression passes over every message.
    bare = data.replace(b"\r\n", b"")
    if b"\n" in bare or b"\r" in bare:
        data = LINE_ENDINGS.sub(b"\r\n", data)
    if data.startswith(b".") or b"\n." in data:
        data = LEADING_DOT.sub(b"..", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


class Replies(asyncio.Protocol):
    """Reads SMTP replies (RFC 5321 §4.2) off a connection as they come, any number in one read.

    aiosmtplib keeps one reply at a time and drops one that arrives while no read waits, so it cannot
    pipeline commands (RFC 2920). Once a connection is open, `SmtpConnection` gives its transport to
    this protocol: replies queue here until they are asked for, in order.

    A read waits until `deadline` (the event loop's clock) at most, then raises `TimeoutError`. One
    timer serves every read of the connection, moved on when it fires (or sooner, for a step given
    less time than the last): `asyncio.timeout` around each step made and cancelled two timers a
    message, 3% of a campaign's time.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.buffer = bytearray()
        self.replies: deque[tuple[int, str]] = deque()
        self.lines: list[bytes] = []  # the lines so far of a reply of several lines
        self.waiter: asyncio.Future[None] | None = None
        self.lost: Exception | None = None
        self.deadline = float("inf")
        self.timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\n")) >= 0:
            line = bytes(self.buffer[:end + 1])
            del self.buffer[:end + 1]
            if len(line) > MAX_REPLY_LINE or not line[:3].isdigit():
                self._lose(SMTPResponseException(-1, f"not an SMTP reply: {line[:80]!r}"))
                self.transport.close()
                return
            self.lines.append(line[4:].strip())
            if line[3:4] != b"-":
                self.replies.append((int(line[:3]), b"\n".join(self.lines).decode("utf-8", "replace")))
                self.lines = []
        if len(self.buffer) > MAX_REPLY_LINE:
            self._lose(SMTPResponseException(-1, "an SMTP reply line is too long"))
            self.transport.close()
        self._wake()

    def eof_received(self) -> bool:
        self._lose(aiosmtplib.SMTPServerDisconnected("the server closed the connection"))
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(aiosmtplib.SMTPServerDisconnected(f"connection lost: {exc}" if exc else "connection lost"))
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _lose(self, exc: Exception) -> None:
        self.lost = self.lost or exc
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def write(self, data: bytes) -> None:
        if self.lost is not None or self.transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("connection lost")
        self.transport.write(data)

    def expect_by(self, seconds: float) -> None:
        """The reads from now on end within `seconds` (the deadline of one step of the transaction)."""
        self.deadline = asyncio.get_running_loop().time() + seconds

    def check_deadline(self) -> None:
        if asyncio.get_running_loop().time() >= self.deadline:
            raise TimeoutError("the SMTP server did not answer in time")

    async def reply(self) -> tuple[int, str]:
        """The next reply: (code, text); `TimeoutError` once the deadline has passed."""
        while not self.replies:
            if self.lost is not None:
                raise self.lost
            self.check_deadline()
            loop = asyncio.get_running_loop()
            self.waiter = loop.create_future()
            if self.timer is None or self.timer.when() > self.deadline:  # none yet, or set for a later step's
                if self.timer is not None:
                    self.timer.cancel()
                self.timer = loop.call_at(self.deadline, self._expire)
            await self.waiter
        return self.replies.popleft()

    def _expire(self) -> None:
        """The timer: wake a read past its deadline (it then raises), or wait on for a later deadline."""
        self.timer = None
        loop = asyncio.get_running_loop()
        if loop.time() < self.deadline:
            self.timer = loop.call_at(self.deadline, self._expire)
        else:
            self._wake()


class SmtpConnection:
    """One SMTP connection that can leave a message's DATA open until told to end it.

    aiosmtplib opens it: it connects, starts TLS or STARTTLS, authenticates and greets. From then on
    the transaction is Kesher's own (`Replies` reads the server's answers), because a message's DATA
    stays open until the commit, which aiosmtplib's `SMTP.data()` cannot do, and because where the
    server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go in one write: one round trip to the
    server instead of three; within a batch they go with the dot of the connection's previous
    message (`finish`), so a message costs one round trip before its commit and none of its own
    after. tests/channels/test_smtp.py runs every case with and without it.
    Of aiosmtplib, only its documented `SMTP` methods and its `transport` attribute are used.
    """

    def __init__(self, client: aiosmtplib.SMTP, timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        self.replies: Replies | None = None
        self.pipelining = False
        self.smtputf8 = False
        self.in_data = False  # DATA accepted and the message written: only the dot or a close may follow
        # The envelope whose MAIL, RCPT and DATA went out with the last terminating dot (PIPELINING):
        # their replies wait in `replies` for the `start` of that message.
        self.ahead: tuple[str, str] | None = None

    @property
    def is_open(self) -> bool:
        return self.replies is not None and self.replies.lost is None and not self.replies.transport.is_closing()

    async def open(self) -> None:
        """Connect (with TLS or STARTTLS and AUTH as configured), greet, then take the connection over."""
        self.replies = None
        self.ahead = None
        # aiosmtplib holds a lock from connecting until `close()`; a connection the server closed while
        # it was Kesher's was never closed on aiosmtplib's side.
        self.client.close()
        await self.client.connect()
        if self.client.is_ehlo_or_helo_needed:
            try:
                await self.client.ehlo()
            except SMTPHeloError:
                await self.client.helo()
        transport = self.client.transport
        if transport is None or transport.is_closing():  # uvloop's transports are not asyncio.Transport's subclasses
            raise aiosmtplib.SMTPServerDisconnected("connection lost")
        self.pipelining = self.client.supports_extension("pipelining")
        self.smtputf8 = self.client.supports_extension("smtputf8")
        self.replies = Replies(transport)
        transport.set_protocol(self.replies)

    async def start(self, mail_from: str, to: str, data: bytes) -> None:
        """MAIL, RCPT, DATA, then `data` (already dot-stuffed); raises `Refused` on a 4xx/5xx reply.

        One deadline covers the four steps; `TimeoutError` when it passes.
        """
        self._replies().expect_by(self.timeout)
        await self._start(mail_from, to, data)

    def _commands(self, mail_from: str, to: str) -> tuple[bytes, bytes, bytes]:
        """MAIL, RCPT and DATA for one message; `Refused` when this server cannot take its addresses."""
        option = b""
        if not (mail_from + to).isascii():
            if not self.smtputf8:
                raise Refused(553, "the address is not ASCII and the server does not take SMTPUTF8")
            option = b" SMTPUTF8"
        return (b"MAIL FROM:<" + mail_from.encode() + b">" + option + b"\r\n",
                b"RCPT TO:<" + to.encode() + b">\r\n", b"DATA\r\n")

    async def _start(self, mail_from: str, to: str, data: bytes) -> None:
        replies = self._replies()
        commands = self._commands(mail_from, to)
        expected = ((250,), (250, 251), (354,))
        ahead, self.ahead = self.ahead, None
        if ahead is not None and ahead != (mail_from, to):  # never, as `SmtpPool` uses it: start afresh
            self.abandon()
            raise aiosmtplib.SMTPServerDisconnected("the commands sent ahead were for another message")
        if ahead is not None or self.pipelining:
            if ahead is None:
                replies.write(b"".join(commands))
            # else they went with the last message's dot: only their replies are left to read
            answers = await self._answers(replies, expected)
        else:
            answers = []
            for command, codes in zip(commands, expected, strict=True):
                replies.write(command)
                answers.append(await replies.reply())
                if answers[-1][0] not in codes:
                    break
        refusal = next((Refused(*a) for a, codes in zip(answers, expected, strict=False) if a[0] not in codes), None)
        if refusal is not None:
            if answers[-1][0] == 354:  # DATA went through after all: only closing can end it without a message
                self.abandon()
            raise refusal
        self.in_data = True
        replies.write(data)
        await self._flushed()

    @staticmethod
    async def _answers(replies: Replies, expected: tuple[tuple[int, ...], ...]) -> list[tuple[int, str]]:
        """The replies to pipelined commands. A server that refuses one and closes the connection (421)
        leaves fewer replies than commands: its refusal, not the lost connection, is then the answer."""
        answers: list[tuple[int, str]] = []
        try:
            for _ in expected:
                answers.append(await replies.reply())
        except (SMTPException, OSError):
            if all(code in codes for (code, _), codes in zip(answers, expected, strict=False)):
                raise
        return answers

    async def finish(self, then: tuple[str, str] | None = None) -> tuple[int, str]:
        """Write the terminating dot and read the server's verdict on the message.

        `then`, the envelope of this connection's next message: where the server offers PIPELINING,
        its MAIL, RCPT and DATA go in the same write as the dot (RFC 2920 §3.1 lets message content
        open a group), so the next message waits for one round trip instead of two.

        Raises `NotEnded` when the connection was gone before the dot could be written (the message
        was not delivered), and aiosmtplib's errors when the reply after the dot is lost or late.
        """
        self.in_data = False
        replies = self.replies
        ending = END_OF_DATA
        if then is not None and self.pipelining:
            try:
                ending += b"".join(self._commands(*then))
                self.ahead = then
            except Refused:
                pass  # its own `start` says why
        try:
            if replies is None:
                raise aiosmtplib.SMTPServerDisconnected("connection lost")
            replies.write(ending)
        except aiosmtplib.SMTPServerDisconnected as exc:
            self.abandon()
            raise NotEnded(str(exc)) from exc
        try:
            replies.expect_by(self.timeout)
            return await replies.reply()
        except (SMTPException, OSError):
            self.abandon()  # the reply was lost or is late: the connection is out of step
            raise

    def abandon(self) -> None:
        """Close the connection without ending DATA: the server discards the unfinished message."""
        self.in_data = False
        self.ahead = None
        if self.replies is not None:
            self.replies.transport.close()
        self.replies = None
        self.client.close()

    async def reset(self) -> None:
        if self.ahead is not None:  # the server may be in DATA for the message sent ahead: only closing ends it
            self.abandon()
            return
        replies = self._replies()
        replies.expect_by(self.timeout)
        replies.write(b"RSET\r\n")
        code, text = await replies.reply()
        if code != 250:
            raise SMTPResponseException(code, text)

    async def quit(self) -> None:
        if self.ahead is not None:  # as in `reset`: a QUIT now could be read as a line of a message
            self.abandon()
            return
        try:
            replies = self._replies()
            replies.expect_by(min(self.timeout, 5.0))
            replies.write(b"QUIT\r\n")
            await replies.reply()
        except (SMTPException, OSError):
            pass
        self.abandon()

    def _replies(self) -> Replies:
        if self.replies is None:
            raise aiosmtplib.SMTPServerDisconnected("connection lost")
        return self.replies

    async def _flushed(self) -> None:
        """Wait until the message has left for the kernel, so that the dot, written after the commit,
        goes straight to the socket instead of queueing behind it in this process."""
        replies = self._replies()
        while replies.transport.get_write_buffer_size():
            replies.check_deadline()
            await asyncio.sleep(0.001)


class SmtpPool:
    """Connections to one SMTP server, opened when first needed and kept across batches."""

    def __init__(self, host: str, port: int, *, security: str = "none", username: str = "", password: str = "",
                 connections: int = 8, timeout: float = 30.0, tls_context: ssl.SSLContext | None = None,
                 local_hostname: str | None = None) -> None:
        if security not in SECURITY:
            raise ValueError(f"security must be one of {', '.join(SECURITY)}, not {security!r}")
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self.host, self.port, self.security = host, port, security
        self.username, self.password = username, password
        self.connections, self.timeout = connections, timeout
        self.tls_context, self.local_hostname = tls_context, local_hostname
        self._pool: list[SmtpConnection] = []
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> SmtpPool:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """QUIT every open connection."""
        await asyncio.gather(*(c.quit() for c in self._pool if c.is_open))
        self._pool.clear()

    def _connection(self, local_hostname: str) -> SmtpConnection:
        client = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, use_tls=self.security == "tls",
            start_tls=self.security == "starttls", username=self.username or None,
            password=self.password or None, timeout=self.timeout, tls_context=self.tls_context,
            local_hostname=local_hostname,
        )
        return SmtpConnection(client, self.timeout)

    async def _connections(self, count: int) -> list[SmtpConnection]:
        if self.local_hostname is None:
            self.local_hostname = await asyncio.to_thread(socket.getfqdn)
        while len(self._pool) < min(count, self.connections):
            self._pool.append(self._connection(self.local_hostname))
        return self._pool[:count]

    async def deliver(self, batch: list[Outgoing], commit: Commit) -> list[Outcome]:
        """Hand `batch` over, committing before any message is final (see the module's docstring).

        `commit(ids)` gets the ids ready to go and returns those that may; it is called once per wave
        of up to `connections` messages, and not for a wave where nothing got ready. If it raises,
        the wave's messages are abandoned (the server keeps none of them) and the error propagates.
        Outcomes come back in the order of `batch`.
        """
        async with self._lock:
            outcomes: dict[int, Outcome] = {}
            waves = [batch[start:start + self.connections] for start in range(0, len(batch), self.connections)]
            for wave, following in zip(waves, [*waves[1:], []], strict=True):
                outcomes.update(await self._wave(wave, commit, following))
            return [outcomes[message.id] for message in batch]

    async def _wave(self, wave: list[Outgoing], commit: Commit, following: list[Outgoing]) -> dict[int, Outcome]:
        """One wave; `following` is the next one, whose i-th message goes on the i-th connection too."""
        pairs = list(zip(await self._connections(len(wave)), wave, strict=True))
        after = {connection: (message.mail_from, message.to)
                 for (connection, _), message in zip(pairs, following, strict=False) if _plain_envelope(message)}
        try:
            started = await asyncio.gather(*(self._start(c, m) for c, m in pairs))
            outcomes = {o.id: o for o in started if o is not None}
            ready = [(c, m) for c, m in pairs if m.id not in outcomes]
            if not ready:
                return outcomes
            allowed = await commit([m.id for _, m in ready])
            for connection, message in ready:
                if message.id not in allowed:
                    connection.abandon()
                    outcomes[message.id] = Outcome(message.id, "withheld")
            # The dots are written by the first step of each task, all before the event loop next looks
            # at any socket: the moment a message is recorded as sent and the moment it is handed over
            # stay microseconds apart.
            finished = await asyncio.gather(*(self._finish(c, m, after.get(c)) for c, m in ready if m.id in allowed))
            outcomes.update((o.id, o) for o in finished)
            return outcomes
        finally:
            # Reached with DATA still open only when commit (or the caller) failed: no dot goes out.
            for connection, _ in pairs:
                if connection.in_data:
                    connection.abandon()

    async def _start(self, connection: SmtpConnection, message: Outgoing) -> Outcome | None:
        """Phase one for one message: None when it waits for its dot, else why it cannot go now."""
        if not _plain_envelope(message):
            return Outcome(message.id, "failed", None, "the envelope address is not a plain address")
        data = data_bytes(message.message)
        while True:
            reused = connection.is_open
            try:
                if not reused:
                    await connection.open()
            except (SMTPException, OSError) as exc:  # connecting, STARTTLS or AUTH: not the message's fault
                connection.abandon()
                return Outcome(message.id, "deferred", getattr(exc, "code", None), f"cannot connect: {exc}")
            try:
                await connection.start(message.mail_from, message.to, data)
                return None
            except Refused as refusal:
                await self._reset(connection)
                return refusal.outcome(message.id)
            except SMTPResponseException as exc:
                await self._reset(connection)
                return Refused(exc.code, exc.message).outcome(message.id)
            except (SMTPException, OSError) as exc:
                connection.abandon()
                if not reused:
                    return Outcome(message.id, "deferred", None, f"connection lost before the end of data: {exc}")
                # A connection kept from an earlier wave may have been closed by the server while idle;
                # the server accepted nothing of this message, so it is tried once on a fresh connection.

    async def _reset(self, connection: SmtpConnection) -> None:
        if not connection.is_open:
            return
        try:
            await connection.reset()
        except (SMTPException, OSError):
            connection.abandon()

    async def _finish(self, connection: SmtpConnection, message: Outgoing, then: tuple[str, str] | None) -> Outcome:
        try:
            code, text = await connection.finish(then)
        except NotEnded as exc:
            return Outcome(message.id, "deferred", None, f"connection lost before the end of data: {exc}")
        except (SMTPException, OSError) as exc:
            # The dot may have arrived: taking the message as sent keeps it from going twice (RFC 1047).
            log.warning("no reply after the end of data of message %s (%s); taken as sent", message.id, exc)
            return Outcome(message.id, "sent", None, f"no reply after the end of data ({exc}); taken as sent")
        return Outcome(message.id, "sent", code, text)


def _plain_envelope(message: Outgoing) -> bool:
    return bool(ENVELOPE_ADDRESS.match(message.mail_from) and ENVELOPE_ADDRESS.match(message.to))
