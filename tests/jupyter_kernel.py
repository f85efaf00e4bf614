"""Jupyter kernel helpers for tests: create/delete a kernel over REST, run code over the kernel WebSocket.

``execute`` speaks the kernel messaging protocol (v5.3) over ``<prefix>api/kernels/<id>/channels``, in the
legacy JSON format, or in the binary ``v1.kernel.websocket.jupyter.org`` format when that subprotocol is
offered and the server selects it (Jupyter Server 2.x does whenever it is offered).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

KERNEL_WS_V1 = "v1.kernel.websocket.jupyter.org"


class KernelError(AssertionError):
    """The code raised in the kernel (``ename``/``evalue`` from its ``error`` message)."""


def create_kernel(prefix_url: str, *, headers: dict[str, str] | None = None, timeout: float = 30.0) -> str:
    """``POST <prefix_url>api/kernels`` (expects 201); returns the new kernel's id."""
    answer = httpx.post(
        prefix_url + "api/kernels",
        json={"name": "python3"},
        headers=headers,
        timeout=timeout,
        trust_env=False,
    )
    assert answer.status_code == 201, f"{answer.status_code}: {answer.text}"
    return answer.json()["id"]


def delete_kernel(
    prefix_url: str, kernel_id: str, *, headers: dict[str, str] | None = None, timeout: float = 30.0
) -> None:
    """``DELETE <prefix_url>api/kernels/<id>`` (expects 204)."""
    answer = httpx.delete(
        f"{prefix_url}api/kernels/{kernel_id}", headers=headers, timeout=timeout, trust_env=False
    )
    assert answer.status_code == 204, f"{answer.status_code}: {answer.text}"


def channels_url(prefix_url: str, kernel_id: str) -> str:
    """The kernel's WebSocket URL (``ws://…/api/kernels/<id>/channels``) from an http(s) prefix URL."""
    ws_prefix = prefix_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return f"{ws_prefix}api/kernels/{kernel_id}/channels"


def _execute_request(code: str, session: str) -> dict[str, Any]:
    header = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": "execute_request",
        "session": session,
        "username": "test",
        "date": datetime.now(UTC).isoformat(),
        "version": "5.3",
    }
    content = {
        "code": code,
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    return {"header": header, "parent_header": {}, "metadata": {}, "content": content}


def encode_v1(message: dict[str, Any], channel: str) -> bytes:
    """A message in the v1 binary format: offset count, offsets, channel, then the four JSON parts."""
    parts = [json.dumps(message[k]).encode() for k in ("header", "parent_header", "metadata", "content")]
    offsets = [8 * (1 + 1 + len(parts) + 1)]
    for part in [channel.encode(), *parts]:
        offsets.append(offsets[-1] + len(part))
    numbers = [len(offsets), *offsets]
    return b"".join(n.to_bytes(8, "little") for n in numbers) + channel.encode() + b"".join(parts)


def decode_v1(frame: bytes) -> dict[str, Any]:
    """A v1 binary frame back into ``{channel, header, parent_header, metadata, content}``."""
    count = int.from_bytes(frame[:8], "little")
    offsets = [int.from_bytes(frame[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
    parts = [frame[offsets[i] : offsets[i + 1]] for i in range(count - 1)]  # channel, 4 JSON, buffers
    names = ("header", "parent_header", "metadata", "content")
    message: dict[str, Any] = {"channel": parts[0].decode()}
    message.update({name: json.loads(part) for name, part in zip(names, parts[1:5], strict=False)})
    return message


async def _send(conn: ClientConnection, message: dict[str, Any], channel: str) -> None:
    if conn.subprotocol == KERNEL_WS_V1:
        await conn.send(encode_v1(message, channel))
    else:
        await conn.send(json.dumps({**message, "channel": channel, "buffers": []}))


def _decode(frame: str | bytes, subprotocol: str | None) -> dict[str, Any]:
    if subprotocol == KERNEL_WS_V1 and isinstance(frame, bytes):
        return decode_v1(frame)
    return json.loads(frame)


async def _collect(conn: ClientConnection, msg_id: str) -> str:
    """Output of ``msg_id`` (stream text, then the text/plain result) until its ``status: idle``."""
    output: list[str] = []
    while True:
        message = _decode(await conn.recv(), conn.subprotocol)
        if message.get("parent_header", {}).get("msg_id") != msg_id or message.get("channel") != "iopub":
            continue
        kind, content = message["header"]["msg_type"], message["content"]
        if kind == "stream":
            output.append(content["text"])
        elif kind == "execute_result":
            output.append(content["data"].get("text/plain", ""))
        elif kind == "error":
            raise KernelError(f"{content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(output)


async def execute(
    ws_url: str,
    code: str,
    *,
    headers: dict[str, str] | None = None,
    subprotocols: Sequence[str] | None = None,
    timeout: float = 30.0,
) -> str:
    """Run ``code`` in the kernel behind ``ws_url``; returns its output (``"2"`` for ``1+1``).

    ``subprotocols=None`` offers none (the JSON format); ``[KERNEL_WS_V1]`` asks for the binary one.
    Raises ``KernelError`` if the code raised, ``TimeoutError`` after ``timeout`` seconds.
    """
    offered = [Subprotocol(p) for p in subprotocols] if subprotocols else None
    async with asyncio.timeout(timeout):
        async with connect(
            ws_url, additional_headers=headers, subprotocols=offered, proxy=None, max_size=None
        ) as conn:
            request = _execute_request(code, session=uuid.uuid4().hex)
            await _send(conn, request, "shell")
            return await _collect(conn, request["header"]["msg_id"])
