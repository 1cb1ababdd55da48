"""E-mail through an SMTP submission server, upgraded with STARTTLS before any login or data.

stdlib ``smtplib`` in a worker thread: the connection is refused (and retried later) when the
server does not offer STARTTLS, so no alert and no password ever crosses the network in clear.
The ``Message-ID`` is derived from the first ``event_id``, so a mail sent twice is recognisable.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import TYPE_CHECKING

from agent.alerts.channels.base import DeliveryError

if TYPE_CHECKING:
    from pathlib import Path

    import aiohttp
    from pydantic import SecretStr

    from agent.alerts.queue import Batch
    from agent.alerts.templates import Message


class Email:
    """One SMTP server and recipient list."""

    def __init__(
        self,
        name: str,
        language: str,
        min_severity: str,
        *,
        host: str,
        port: int,
        username: str | None,
        password: SecretStr | None,
        ca_file: Path | None,
        from_addr: str,
        to: list[str],
        timeout_s: float,
    ) -> None:
        """Keep the server, login and addresses."""
        self.name, self.language, self.min_severity = name, language, min_severity
        self._host, self._port = host, port
        self._username, self._password = username, password
        self._ca_file = ca_file
        self._from, self._to = from_addr, list(to)
        self._timeout = timeout_s

    def build(self, message: Message, batch: Batch) -> EmailMessage:
        """The mail: subject = title, plain-text body."""
        mail = EmailMessage()
        mail["Subject"] = message.title
        mail["From"] = self._from
        mail["To"] = ", ".join(self._to)
        mail["Date"] = formatdate(usegmt=True)
        domain = self._from.rpartition("@")[2] or "altiwatch.invalid"
        mail["Message-ID"] = f"<{batch.event_ids[0]}.{self.name}@{domain}>"
        mail.set_content(message.text)
        return mail

    def _send_blocking(self, mail: EmailMessage) -> None:
        context = ssl.create_default_context(
            cafile=str(self._ca_file) if self._ca_file is not None else None
        )
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
            smtp.starttls(context=context)
            if self._username is not None and self._password is not None:
                smtp.login(self._username, self._password.get_secret_value())
            smtp.send_message(mail)

    async def send(self, http: aiohttp.ClientSession, message: Message, batch: Batch) -> None:
        """Send the mail from a worker thread."""
        del http
        try:
            await asyncio.to_thread(self._send_blocking, self.build(message, batch))
        except (smtplib.SMTPException, OSError) as exc:
            # SMTP replies may echo addresses but never the password; keep to the class name.
            raise DeliveryError(type(exc).__name__) from exc
