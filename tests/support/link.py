"""A loopback TCP link to a broker that a test can break: swallow one direction, cut, refuse.

``LinkProxy(broker, host=...)`` listens on ``host:<free port>`` and forwards each connection to the
broker. While ``swallow_up`` is set, bytes from the client (PUBLISH, CONNECT, PINGREQ) are read and
dropped, so they never reach the broker; while ``swallow_down`` is set, bytes from the broker
(PUBACK, CONNACK) are dropped, so the client never learns its messages arrived. :meth:`cut`
closes every forwarded connection at once (the client sees its link drop); :meth:`shut` also
refuses new ones until :meth:`open`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Self

from tests.support.ports import free_port

if TYPE_CHECKING:
    from tests.support.mosquitto import Mosquitto


class LinkProxy:
    """A breakable forwarder from ``host:port`` to a broker."""

    def __init__(self, broker: Mosquitto, *, host: str) -> None:
        """Forward ``host:<free port>`` to ``broker`` once :meth:`open` is called."""
        self.broker = broker
        self.host = host
        self.port = free_port(host)
        self.swallow_up = False
        self.swallow_down = False
        self.accepted = 0
        self.swallowed_up_bytes = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        """Start accepting."""
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Refuse new connections and cut the open ones."""
        await self.shut()

    async def open(self) -> None:
        """Accept and forward connections."""
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def shut(self) -> None:
        """Refuse new connections and cut every forwarded one."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self.cut()

    async def cut(self) -> None:
        """Close every forwarded connection now (both sides); keep accepting new ones."""
        links = list(self._links)
        for task in links:
            task.cancel()
        for task in links:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        self.accepted += 1
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(self.broker.host, self.broker.port)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pipe(reader, up_writer, up=True), name="link.up")
                tg.create_task(self._pipe(up_reader, writer, up=False), name="link.down")
        except* OSError:
            pass
        finally:
            writer.close()
            if up_writer is not None:
                up_writer.close()
            self._links.discard(task)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        while data := await reader.read(65536):
            if self.swallow_up if up else self.swallow_down:
                if up:
                    self.swallowed_up_bytes += len(data)
                continue
            writer.write(data)
            await writer.drain()
        writer.close()
