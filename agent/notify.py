"""systemd's notify protocol (sd_notify): READY, WATCHDOG, STOPPING, RELOADING and STATUS.

Self-contained, no dependency: the datagram pattern of systemd's MIT-0
``man/notify-selfcontained-example.py`` (``AF_UNIX``/``SOCK_DGRAM`` to ``$NOTIFY_SOCKET``,
``@`` meaning the abstract namespace). Without ``NOTIFY_SOCKET`` (not under systemd, or
``Type=simple``) every call is a no-op, so the service can call these unconditionally.

    notifier = Notifier.from_env()
    notifier.ready()                        # after the first poll cycle
    interval = notifier.watchdog_interval_s # half of WATCHDOG_USEC, or None
    notifier.watchdog()                     # from the event loop, every ``interval`` s
    notifier.stopping()                     # on SIGTERM
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from collections.abc import Mapping

log = structlog.get_logger(__name__)


@dataclass
class Notifier:
    """Sends sd_notify messages to ``socket_path``; a no-op when it is None."""

    socket_path: str | None = None
    watchdog_usec: int | None = None
    _failed: bool = field(default=False, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """Build from ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID``."""
        environ: Mapping[str, str] = os.environ if env is None else env
        path = environ.get("NOTIFY_SOCKET") or None
        watchdog_usec: int | None = None
        usec_text = environ.get("WATCHDOG_USEC", "")
        pid_text = environ.get("WATCHDOG_PID", "")
        # WATCHDOG_PID, when set, names the process the watchdog is meant for.
        for_us = not pid_text or (pid_text.isdigit() and int(pid_text) == os.getpid())
        if usec_text.isdigit() and int(usec_text) > 0 and for_us:
            watchdog_usec = int(usec_text)
        return cls(socket_path=path, watchdog_usec=watchdog_usec)

    @property
    def enabled(self) -> bool:
        """True when running under a notify-aware service manager."""
        return self.socket_path is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1: half of ``WATCHDOG_USEC``; None when not requested."""
        if self.socket_path is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2_000_000

    def ready(self) -> None:
        """Startup finished (``READY=1``)."""
        self.send("READY=1")

    def watchdog(self) -> None:
        """Keep-alive ping (``WATCHDOG=1``)."""
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        """Shutdown started (``STOPPING=1``)."""
        self.send("STOPPING=1")

    def reloading(self) -> None:
        """Config reload started (``RELOADING=1``); send ``ready()`` again when done."""
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec}")

    def status(self, text: str) -> None:
        """Free-form status shown by ``systemctl status`` (``STATUS=...``)."""
        self.send("STATUS=" + text.replace("\n", " "))

    def send(self, message: str) -> bool:
        """Send one datagram; return False (and log once) if it could not be sent."""
        if self.socket_path is None:
            return False
        address = self.socket_path
        if address.startswith("@"):
            address = "\0" + address[1:]
        elif not address.startswith("/"):
            self._warn_once(f"unsupported NOTIFY_SOCKET {self.socket_path!r}")
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall(message.encode())
        except OSError as exc:
            self._warn_once(str(exc))
            return False
        self._failed = False
        return True

    def _warn_once(self, detail: str) -> None:
        if not self._failed:
            log.warning("sd_notify_failed", detail=detail)
        self._failed = True
