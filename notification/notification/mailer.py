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
        """The email, checked to serialise; PermanentError when this content can never make a valid mail."""
        try:
            message = EmailMessage()
            message["From"] = self._sender
            message["To"] = to
            message["Subject"] = subject
            message["Date"] = formatdate(usegmt=True)
            message["Message-ID"] = make_msgid(domain=self._sender.rpartition("@")[2] or None)
            message.set_content(body)
            # Serialise now, as smtplib would for an SMTPUTF8 server: a header that cannot be written (a line
            # separator such as U+2028, a lone surrogate) fails here, before any connection, as what it is.
            message.as_bytes(policy=message.policy.clone(utf8=True))
        except (ValueError, UnicodeError) as exc:  # header parse/serialise errors are ValueError subclasses
            raise PermanentError(f"the mail could not be built: {exc}") from exc
        return message

    def send(self, to: str, subject: str, body: str) -> None:
        """Hands the mail to the SMTP server; MailUnavailable (transient) or PermanentError on failure."""
        to = ascii_domain(to)
        message = self.build(to, subject, body)
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._user:
                    smtp.login(self._user, self._password)
                smtp.ehlo_or_helo_if_needed()
                if not to.isascii() and not smtp.has_extn("smtputf8"):
                    # Only this recipient needs SMTPUTF8: every other mail goes through this server fine.
                    raise PermanentError(f"the mail server does not accept internationalised addresses "
                                         f"(no SMTPUTF8), so it cannot deliver to {to}")
                smtp.send_message(message)
        except PermanentError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is classified below
            raise classify(exc) from exc


def ascii_domain(address: str) -> str:
    """The address with an internationalised domain in its ASCII (IDNA) form, so that a server without SMTPUTF8
    can still deliver it; unchanged when the local part is not ASCII (only SMTPUTF8 carries that) or the domain
    is not a valid IDNA name (the server then refuses it for what it is)."""
    local, _, domain = address.rpartition("@")
    if domain.isascii() or not local.isascii():
        return address
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return address


def classify(exc: BaseException) -> Exception:
    """Maps an smtplib/socket failure to PermanentError (about this message) or MailUnavailable (the rest).

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
    if isinstance(exc, UnicodeError):
        # Our content (address or mail) cannot be written on the wire: no retry will change that.
        return PermanentError(f"the mail cannot be encoded for sending: {exc}")
    # Connection refused, timeouts, TLS errors, disconnects, STARTTLS/AUTH not offered.
    return MailUnavailable(f"{type(exc).__name__}: {exc}")


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
