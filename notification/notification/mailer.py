"""SMTP adapter: sends one plain-text email; sorts failures into retry-later and never-deliverable."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from mp3core.errors import PermanentError


class MailUnavailable(Exception):
    """The mail could not be handed over now (server down, timeout, 4xx, misconfiguration): try again later."""


class Mailer:
    def __init__(self, host: str, port: int, *, sender: str, user: str = "", password: str = "",
                 starttls: bool = False, timeout_s: float = 30.0) -> None:
        self._host, self._port = host, port
        self._sender = sender
        self._user, self._password = user, password
        self._starttls = starttls
        self._timeout = timeout_s

    def build(self, to: str, subject: str, body: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain=self._sender.rpartition("@")[2] or None)
        message.set_content(body)
        return message

    def send(self, to: str, subject: str, body: str) -> None:
        """Hands the mail to the SMTP server; MailUnavailable (transient) or PermanentError on failure."""
        message = self.build(to, subject, body)
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._user:
                    smtp.login(self._user, self._password)
                smtp.send_message(message)
        except Exception as exc:  # noqa: BLE001 - every failure is classified below
            raise classify(exc) from exc


def classify(exc: BaseException) -> Exception:
    """Maps an smtplib/socket failure to PermanentError (5xx about this message) or MailUnavailable (the rest).

    Only rejections of this recipient or this content are permanent. A 5xx for login or the sender address
    is our configuration: treating it as permanent would dead-letter every message until someone fixes it,
    so it is retried (and logged) instead.
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        if codes and all(code >= 500 for code in codes):
            address, (code, reply) = next(iter(exc.recipients.items()))
            return PermanentError(f"the mail server rejected the recipient {address}: {code} {_text(reply)}")
        return MailUnavailable(f"recipient temporarily refused: {exc.recipients}")
    if isinstance(exc, smtplib.SMTPDataError) and exc.smtp_code >= 500:
        return PermanentError(f"the mail server rejected the message: {exc.smtp_code} {_text(exc.smtp_error)}")
    if isinstance(exc, smtplib.SMTPResponseException):
        return MailUnavailable(f"SMTP {exc.smtp_code} {_text(exc.smtp_error)}")
    # Connection refused, timeouts, TLS errors, disconnects, STARTTLS/AUTH not offered.
    return MailUnavailable(f"{type(exc).__name__}: {exc}")


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
