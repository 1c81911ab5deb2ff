"""A local SMTP server (aiosmtpd) for the email notifier: STARTTLS or TLS with a throwaway certificate, AUTH.

``smtp_server(tls="starttls" | "implicit" | "none", login=("user", "pw"))`` yields
an ``SmtpServer`` with ``url``, ``ca_file`` (the certificate to trust) and the
``messages`` received (``email.message.Message``s).
"""

from __future__ import annotations

import contextlib
import datetime
import email
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.doubles.servers import free_port


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class SmtpServer:
    def __init__(self, url: str, ca_file: Path) -> None:
        self.url, self.ca_file = url, ca_file
        self.messages: list[Any] = []
        self.envelopes: list[Any] = []
        self.refuse_with: str | None = None
        self._received = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse_with:
            return self.refuse_with
        with self._received:
            self.envelopes.append(envelope)
            self.messages.append(email.message_from_bytes(envelope.content))
            self._received.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:
        with self._received:
            self._received.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)


@contextlib.contextmanager
def smtp_server(folder: Path, *, tls: str = "starttls", login: tuple[str, str] | None = None) -> Iterator[SmtpServer]:
    cert_file, key_file = self_signed(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    port = free_port()
    scheme = {"starttls": "smtp", "implicit": "smtps", "none": "smtp+insecure"}[tls]
    server = SmtpServer(f"{scheme}://127.0.0.1:{port}", cert_file)

    def authenticate(smtp: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and login is not None and (
            data.login.decode(), data.password.decode()) == login
        return AuthResult(success=ok, handled=False)  # False: the server answers 535 itself

    options: dict[str, Any] = {}
    if tls == "starttls":
        options.update(tls_context=context, require_starttls=True)
    elif tls == "implicit":
        options.update(ssl_context=context)
    if login is not None:
        # aiosmtpd counts only STARTTLS as TLS; an implicit-TLS connection is one all the same.
        options.update(authenticator=authenticate, auth_required=True, auth_require_tls=tls == "starttls")
    controller = Controller(server, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
