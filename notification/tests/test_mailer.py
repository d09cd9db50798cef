"""Unit tests for notification.mailer: failure classification and a real exchange with a local test server."""

from __future__ import annotations

import smtplib

import pytest
from aiosmtpd.controller import Controller

from mp3core.errors import PermanentError
from notification.mailer import Mailer, MailUnavailable, ascii_domain, classify
from tests.support import free_port


@pytest.mark.parametrize(("error", "kind", "text"), [
    (ConnectionRefusedError(111, "Connection refused"), MailUnavailable, "Connection refused"),
    (TimeoutError("timed out"), MailUnavailable, "timed out"),
    (smtplib.SMTPServerDisconnected("gone"), MailUnavailable, "gone"),
    (smtplib.SMTPRecipientsRefused({"a@b.c": (550, b"5.1.1 no such user")}), PermanentError,
     "the mail server rejected the recipient a@b.c: 550 5.1.1 no such user"),
    (smtplib.SMTPRecipientsRefused({"a@b.c": (450, b"mailbox busy")}), MailUnavailable, "temporarily"),
    (smtplib.SMTPDataError(554, b"spam"), PermanentError, "the mail server rejected the message: 554 spam"),
    (smtplib.SMTPDataError(451, b"try later"), MailUnavailable, "451 try later"),
    (smtplib.SMTPSenderRefused(550, b"bad sender", "me@x"), MailUnavailable, "550 bad sender"),
    (smtplib.SMTPAuthenticationError(535, b"bad credentials"), MailUnavailable, "535 bad credentials"),
    (smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."), MailUnavailable, "STARTTLS"),
    # Our content cannot go on the wire (a lone surrogate in an address): no retry changes that.
    (UnicodeEncodeError("utf-8", "a\ud800@b.c", 1, 2, "surrogates not allowed"), PermanentError,
     "cannot be encoded"),
])
def test_classify(error, kind, text):
    result = classify(error)
    assert type(result) is kind and text in str(result)


def test_build_sets_headers():
    message = Mailer("127.0.0.1", 25, sender="mp3converter@localhost").build("a@b.c", "Hi", "Body")
    assert (message["From"], message["To"], message["Subject"]) == ("mp3converter@localhost", "a@b.c", "Hi")
    assert message["Date"] and message["Message-ID"].endswith("@localhost>")
    assert message.get_content() == "Body\n"


@pytest.mark.parametrize(("to", "subject"), [
    ("a@b.c", "x\u2028y"), ("a@b.c", "x\x85y"), ("a@b.c", "x\ry"), ("a@b.c", "x\ud800"), ("a\ud800@b.c", "s"),
])
def test_a_mail_that_cannot_be_built_is_permanent(to, subject):
    with pytest.raises(PermanentError, match="the mail could not be built"):
        Mailer("127.0.0.1", 25, sender="mp3converter@localhost").build(to, subject, "Body")


@pytest.mark.parametrize(("address", "expected"), [
    ("ann@example.com", "ann@example.com"),
    ("ann@exämple.com", "ann@xn--exmple-cua.com"),
    ("ánn@exämple.com", "ánn@exämple.com"),  # the local part needs SMTPUTF8 anyway
    ("ann@" + "ä" * 70 + ".com", "ann@" + "ä" * 70 + ".com"),  # not a valid IDNA name: left as it is
])
def test_ascii_domain(address, expected):
    assert ascii_domain(address) == expected


class Recorder:
    def __init__(self) -> None:
        self.envelopes = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted"


def _serve(smtputf8: bool):
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=smtputf8)
    controller.start()
    return controller, recorder


@pytest.fixture
def smtp_server():
    controller, recorder = _serve(smtputf8=True)  # aiosmtpd's Controller default
    yield controller.port, recorder
    controller.stop()


@pytest.fixture
def ascii_smtp_server():
    """A server that does not announce SMTPUTF8, as many relays still do not."""
    controller, recorder = _serve(smtputf8=False)
    yield controller.port, recorder
    controller.stop()


def test_send_delivers_to_a_real_smtp_server(smtp_server):
    port, recorder = smtp_server
    Mailer("127.0.0.1", port, sender="mp3converter@localhost", timeout_s=5).send(
        "alice@example.com", "Your MP3 is ready: é.mp4", "Hello\n")
    [envelope] = recorder.envelopes
    assert envelope.mail_from == "mp3converter@localhost" and envelope.rcpt_tos == ["alice@example.com"]
    assert b"Subject: Your MP3 is ready: =?utf-8?" in envelope.original_content


def test_send_to_rejected_recipient_is_permanent(smtp_server):
    port, _ = smtp_server
    with pytest.raises(PermanentError, match="550"):
        Mailer("127.0.0.1", port, sender="mp3converter@localhost", timeout_s=5).send("nobody@example.com", "s", "b")


def test_send_with_server_down_is_transient():
    with pytest.raises(MailUnavailable):
        Mailer("127.0.0.1", free_port(), sender="mp3converter@localhost", timeout_s=2).send("a@b.c", "s", "b")


def test_starttls_required_but_not_offered_is_transient(smtp_server):
    port, recorder = smtp_server
    with pytest.raises(MailUnavailable, match="STARTTLS"):
        Mailer("127.0.0.1", port, sender="mp3converter@localhost", starttls=True, timeout_s=5).send("a@b.c", "s", "b")
    assert recorder.envelopes == []


def test_internationalised_local_part_to_a_server_without_smtputf8_is_permanent(ascii_smtp_server):
    port, recorder = ascii_smtp_server
    with pytest.raises(PermanentError, match="no SMTPUTF8.*ánn@example.com"):
        Mailer("127.0.0.1", port, sender="mp3converter@localhost", timeout_s=5).send("ánn@example.com", "s", "b")
    assert recorder.envelopes == []


def test_internationalised_domain_reaches_a_server_without_smtputf8_in_ascii_form(ascii_smtp_server):
    port, recorder = ascii_smtp_server
    Mailer("127.0.0.1", port, sender="mp3converter@localhost", timeout_s=5).send("ann@exämple.com", "s", "b")
    [envelope] = recorder.envelopes
    assert envelope.rcpt_tos == ["ann@xn--exmple-cua.com"]
    assert b"To: ann@xn--exmple-cua.com" in envelope.original_content


def test_internationalised_address_reaches_a_server_with_smtputf8(smtp_server):
    port, recorder = smtp_server
    Mailer("127.0.0.1", port, sender="mp3converter@localhost", timeout_s=5).send("ánn@exämple.com", "s", "b")
    [envelope] = recorder.envelopes
    assert envelope.rcpt_tos == ["ánn@exämple.com"]
