"""The ``email`` notifier: one email per event, through SMTP (``smtplib``).

``TWIN_NOTIFY_SMTP_URL`` says where and how:

``smtps://host[:465]``          TLS from the first byte
``smtp://host[:587]``           STARTTLS, required (a server that does not offer it is refused)
``smtp+insecure://host[:25]``   no TLS at all: only for a relay on the same machine or network

A user name goes in the URL (``smtp://me%40example.com@host:587``) or in the
secret ``NOTIFY_SMTP_USERNAME``; the password is always the secret
``NOTIFY_SMTP_PASSWORD`` (a password in the URL is refused). The
certificate is checked against the system's CAs, or ``TWIN_NOTIFY_SMTP_CA_FILE``.
``TWIN_NOTIFY_EMAIL_TO`` lists the recipients; ``TWIN_NOTIFY_EMAIL_FROM``
defaults to the user name when it is an address, else the first recipient.
"""

from __future__ import annotations

import email.message
import email.utils
import smtplib
import socket
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from twin_notify.http import attempt_timeout
from twin_server import describe, valid_email
from twin_server.errors import BackendError, BackendTimeout, BackendUnavailable, ConfigurationError

PORTS = {"smtps": 465, "smtp": 587, "smtp+insecure": 25}
USERNAME_SECRET, PASSWORD_SECRET = "NOTIFY_SMTP_USERNAME", "NOTIFY_SMTP_PASSWORD"
SUBJECTS = {"lead": "New lead from your twin", "unanswered": "A question your twin could not answer"}


class EmailNotifier:
    def __init__(self, *, scheme: str, host: str, port: int, sender: str, recipients: list[str],
                 credentials: Callable[[], tuple[str, str] | None], tls: ssl.SSLContext | None) -> None:
        self.scheme, self.host, self.port = scheme, host, port
        self.sender, self.recipients = sender, recipients
        self.credentials, self.tls = credentials, tls

    @classmethod
    def from_context(cls, context: Any) -> "EmailNotifier":
        settings = context.settings
        raw = (settings.get_str("NOTIFY_SMTP_URL") or "").strip()
        if not raw:
            raise ConfigurationError("notifier 'email' needs TWIN_NOTIFY_SMTP_URL, e.g. smtp://mail.example.com:587")
        parts = urlsplit(raw)
        if parts.scheme not in PORTS or not parts.hostname:
            raise ConfigurationError("TWIN_NOTIFY_SMTP_URL must be smtps://host, smtp://host (STARTTLS) or "
                                     "smtp+insecure://host")
        if parts.password:
            raise ConfigurationError(f"TWIN_NOTIFY_SMTP_URL must not hold a password: put it in the secret "
                                     f"{PASSWORD_SECRET}")
        try:
            port = parts.port or PORTS[parts.scheme]
        except ValueError:
            raise ConfigurationError("TWIN_NOTIFY_SMTP_URL has a port that is not a number") from None
        recipients = settings.get_list("NOTIFY_EMAIL_TO")
        if not recipients or not all(valid_email(r) for r in recipients):
            raise ConfigurationError("notifier 'email' needs TWIN_NOTIFY_EMAIL_TO: one or more email addresses, "
                                     "comma-separated")
        username = unquote(parts.username) if parts.username else _optional_secret(context, USERNAME_SECRET)
        if username:
            context.secret(PASSWORD_SECRET)  # fail at startup, not at the first lead
        sender = (settings.get_str("NOTIFY_EMAIL_FROM") or "").strip()
        sender = sender or (username if username and valid_email(username) else recipients[0])
        if not valid_email(sender):
            raise ConfigurationError("TWIN_NOTIFY_EMAIL_FROM must be an email address")
        tls = None
        if parts.scheme != "smtp+insecure":
            ca_file = (settings.get_str("NOTIFY_SMTP_CA_FILE") or "").strip() or None
            try:
                tls = ssl.create_default_context(cafile=ca_file)
            except OSError as exc:
                raise ConfigurationError(f"TWIN_NOTIFY_SMTP_CA_FILE cannot be read: {exc.strerror}") from None

        def credentials() -> tuple[str, str] | None:
            return (username, context.secret(PASSWORD_SECRET)) if username else None

        return cls(scheme=parts.scheme, host=parts.hostname, port=port, sender=sender, recipients=recipients,
                   credentials=credentials, tls=tls)

    def __repr__(self) -> str:
        return f"EmailNotifier({self.scheme}://{self.host}:{self.port})"

    def message(self, event: Any) -> email.message.EmailMessage:
        described = describe(event)
        message = email.message.EmailMessage()
        message["Subject"] = SUBJECTS[described["event"]]
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = email.utils.formatdate(localtime=False)
        message["Message-ID"] = email.utils.make_msgid(domain="twin-server")
        if described["event"] == "lead" and described.get("email"):
            message["Reply-To"] = described["email"]
        lines = [described["text"], ""]
        lines += [f"{k}: {v}" for k, v in described.items() if k not in ("event", "text") and v not in ("", [])]
        message.set_content("\n".join(lines))
        return message

    def notify(self, event: Any, timeout: float | None = None) -> None:
        message = self.message(event)
        seconds = attempt_timeout(timeout)
        where = f"the SMTP server {self.host}:{self.port}"
        try:
            if self.scheme == "smtps":
                client: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=seconds, context=self.tls)
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=seconds)
            with client:
                if self.scheme == "smtp":
                    client.ehlo()
                    if not client.has_extn("starttls"):
                        raise BackendError(f"{where} does not offer STARTTLS (use smtp+insecure:// only for a "
                                           "local relay)")
                    client.starttls(context=self.tls)
                    client.ehlo()
                login = self.credentials()
                if login is not None:
                    client.login(*login)
                client.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise BackendError(f"{where} refused the credentials ({exc.smtp_code})") from None
        except smtplib.SMTPResponseException as exc:
            error = BackendUnavailable if 400 <= exc.smtp_code < 500 else BackendError
            raise error(f"{where} answered {exc.smtp_code}") from None
        except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            raise BackendUnavailable(f"{where} could not be reached ({type(exc).__name__})") from None
        except (socket.timeout, TimeoutError):
            raise BackendTimeout(f"{where} did not answer in time") from None
        except ssl.SSLError as exc:
            raise BackendError(f"TLS with {where} failed ({exc.reason or type(exc).__name__})") from None
        except smtplib.SMTPException as exc:
            raise BackendError(f"{where} failed ({type(exc).__name__})") from None
        except OSError as exc:
            raise BackendUnavailable(f"{where} could not be reached ({type(exc).__name__})") from None


def _optional_secret(context: Any, name: str) -> str | None:
    try:
        return context.secret(name).strip() or None
    except ConfigurationError:
        return None
