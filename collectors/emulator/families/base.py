"""Common shape of an emulated firmware: ports, cgminer-style RPC envelopes, JSON helpers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from collectors.emulator.wire import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from collectors.emulator.miner import EmulatedMiner
    from collectors.emulator.profiles import FirmwareFamily

JsonDict = dict[str, Any]

INVALID_COMMAND_CODE = 14


def dumps(obj: object) -> bytes:
    """Compact JSON bytes, as firmware sends it."""
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def json_response(obj: object, status: int = 200) -> HttpResponse:
    """A JSON HTTP response."""
    return HttpResponse(status=status, body=dumps(obj))


def not_found() -> HttpResponse:
    """A non-JSON 404 page."""
    return HttpResponse(
        status=404,
        body=b"<html><head><title>404 Not Found</title></head><body>Not Found</body></html>",
        content_type="text/html",
    )


class Firmware:
    """Base class: override the ``rpc_*`` renderers and :meth:`http`."""

    family: ClassVar[FirmwareFamily]
    rpc_port: ClassVar[bool] = True
    web_port: ClassVar[bool] = True
    tls_port: ClassVar[bool] = False
    grpc_port: ClassVar[bool] = False
    v3_port: ClassVar[bool] = False
    """Listen on 4433 (Whatsminer API v3) and answer with ``v3_request``."""
    rpc_terminator: ClassVar[bytes] = b"\x00"
    joins: ClassVar[bool] = False
    description: ClassVar[str] = "cgminer 4.11.1"

    # ---- RPC -------------------------------------------------------------------------

    def status(
        self, miner: EmulatedMiner, code: int, msg: str, status: str = "S"
    ) -> list[JsonDict]:
        """A cgminer STATUS list."""
        return [
            {
                "STATUS": status,
                "When": int(miner.sim_time),
                "Code": code,
                "Msg": msg,
                "Description": self.description,
            }
        ]

    def rpc_reply(self, miner: EmulatedMiner, command: str, parameter: object) -> bytes:
        """Reply bytes for ``command`` (cached per state version)."""
        del parameter  # read commands ignore their parameter
        return miner.cached(f"rpc:{command}", lambda: self._render_rpc(miner, command))

    def _render_rpc(self, miner: EmulatedMiner, command: str) -> bytes:
        if "+" in command:
            parts = command.split("+")
            if not self.joins:
                return self.invalid(miner) + self.rpc_terminator
            joined: JsonDict = {}
            for part in parts:
                one = self.render_command(miner, part)
                joined[part] = [one if one is not None else self.invalid_dict(miner)]
            joined["id"] = 1
            return dumps(joined) + self.rpc_terminator
        reply = self.render_command(miner, command)
        if reply is None:
            return self.invalid(miner) + self.rpc_terminator
        return dumps(reply) + self.rpc_terminator

    def invalid_dict(self, miner: EmulatedMiner) -> JsonDict:
        """Cgminer's answer to a command it does not know (Code 14)."""
        return {"STATUS": self.status(miner, INVALID_COMMAND_CODE, "Invalid command", "E"), "id": 1}

    def invalid(self, miner: EmulatedMiner) -> bytes:
        """Invalid-command reply bytes."""
        return dumps(self.invalid_dict(miner))

    def render_command(self, miner: EmulatedMiner, command: str) -> JsonDict | None:
        """The reply object for one command, or None if the firmware does not know it."""
        renderer = getattr(self, f"rpc_{command}", None)
        if renderer is None:
            return None
        result: JsonDict = renderer(miner)
        return result

    def v3_request(self, miner: EmulatedMiner, request: object) -> bytes:
        """The JSON body answering one Whatsminer API v3 request (families with ``v3_port``)."""
        del miner, request
        return b"{}"

    # ---- HTTP ------------------------------------------------------------------------

    def http(self, miner: EmulatedMiner, request: HttpRequest) -> HttpResponse:
        """Answer one HTTP request."""
        del miner, request
        return not_found()
