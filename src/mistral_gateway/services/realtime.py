"""Realtime transcription sessions (the WebSocket protocol of docs/realtime.md), independent of any transport.

``RealtimeService.serve`` runs one session over two callables: ``receive()`` gives the client's next message (text
or bytes; None once the client is gone) and ``send(event)`` delivers one server event (a dict). Two tasks share the
session: the reader validates messages and buffers audio; the decoder re-decodes the growing audio window every
``step`` of new audio and emits the words two consecutive decodings agree on (``realtime_text``), then everything on
flush or end. Bad messages get an error event and the session goes on; limits (idle, session length, audio
length) and engine failures end it with an error event. The service never raises for what a client sends.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from mistral_gateway.config import ModelEntry, Settings
from mistral_gateway.echo import shorten
from mistral_gateway.engines.base import EngineError, SpeechEngine
from mistral_gateway.engines.manager import EngineManager, kind_of
from mistral_gateway.errors import BadRequest, GatewayError, InternalError, PayloadTooLarge, ServiceUnavailable
from mistral_gateway.protocol.realtime import (
    MAX_APPEND_BYTES,
    AudioAppend,
    AudioEnd,
    AudioFlush,
    SessionUpdate,
    client_message,
    error_event,
)
from mistral_gateway.services.completions import engine_errors, resolve_text_model
from mistral_gateway.services.models import ModelCatalog
from mistral_gateway.services.realtime_session import Session

__all__ = ["CLOSE_NORMAL", "ClientGone", "Outcome", "RealtimeLimits", "RealtimeService", "Receive", "Send",
           "SessionTimeout"]

log = logging.getLogger("mistral_gateway.realtime")

Receive = Callable[[], Awaitable[str | bytes | None]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
CAPABILITY = "audio_transcription"
# WebSocket close codes (RFC 6455): normal, policy violation (a limit), message too big, server error, try later
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_SERVER, CLOSE_AGAIN = 1000, 1008, 1011, 1013


@dataclass(frozen=True, slots=True)
class RealtimeLimits:
    max_sessions: int = 4
    max_audio_seconds: float = 1800.0
    max_session_seconds: float = 3600.0
    idle_seconds: float = 30.0
    window_seconds: float = 20.0
    step_ms: int = 1000
    min_step_ms: int = 500

    @classmethod
    def from_settings(cls, settings: Settings) -> RealtimeLimits:
        return cls(settings.realtime_max_sessions, settings.realtime_max_audio_seconds,
                   settings.realtime_max_session_seconds, settings.realtime_idle_seconds,
                   settings.realtime_window_seconds, settings.realtime_step_ms, settings.realtime_min_step_ms)


@dataclass(slots=True)
class Outcome:
    """How a session ended: the status it is recorded with (200, an error's, or 499 when the client left), the
    WebSocket close code (None: the client closed first), and what it used."""

    status: int = 200
    close_code: int | None = CLOSE_NORMAL
    model: str | None = None
    audio_seconds: float = 0.0
    reason: str = ""


@dataclass(slots=True)
class RealtimeService:
    catalog: ModelCatalog
    engines: EngineManager
    limits: RealtimeLimits = field(default_factory=RealtimeLimits)
    active: int = 0  # sessions open now, in this process

    async def serve(self, model: str | None, receive: Receive, send: Send) -> Outcome:
        """Run one session of ``model`` (the ``model`` query parameter) to its end; never raises a GatewayError."""
        if self.active >= self.limits.max_sessions:
            return await _refuse(send, ServiceUnavailable(
                f"{self.active} realtime sessions are open, the limit of this server; retry shortly",
                code="TOO_MANY_SESSIONS"), CLOSE_AGAIN)
        self.active += 1
        try:
            try:
                entry, engine = await self._engine(model)
            except GatewayError as err:
                return await _refuse(send, err, CLOSE_POLICY)
            session = Session(model or entry.id, engine, self.limits, send)
            return await _Run(session, self.limits).run(receive)
        finally:
            self.active -= 1

    async def _engine(self, model: str | None) -> tuple[ModelEntry, SpeechEngine]:
        if not model:
            raise BadRequest("the 'model' query parameter is required (e.g. ?model=voxtral-mini-latest)",
                             code="MISSING_MODEL", param="model")
        entry = resolve_text_model(self.catalog, model, CAPABILITY)  # 404 unknown; 400 naming the capability
        if kind_of(entry) != "speech":
            raise BadRequest(f"model {model!r} is not served by a speech engine", code="UNSUPPORTED_MODEL_CAPABILITY",
                             param="model")
        try:
            return entry, await self.engines.speech(entry)
        except EngineError as exc:
            raise ServiceUnavailable(f"model {model!r} could not be loaded: {exc}", retry_after=30.0,
                                     code="MODEL_LOAD_FAILED") from exc


async def _refuse(send: Send, err: GatewayError, close_code: int) -> Outcome:
    with contextlib.suppress(ClientGone):
        await send(error_event(err.message, err.status))
    return Outcome(err.status, close_code, reason=err.message[:120])


class ClientGone(Exception):
    """Raised by ``send`` when the client is no longer there to receive the event (the transport says how)."""


class SessionTimeout(GatewayError):
    """The session sat idle, or lasted longer than allowed."""

    status = 408
    type = "invalid_request_error"
    default_code = "SESSION_TIMEOUT"


class _Fatal(Exception):
    """Ends the session with an error event."""

    def __init__(self, err: GatewayError, close_code: int) -> None:
        super().__init__(err.message)
        self.err, self.close_code = err, close_code


class _Run:
    """The reader and the decoder of one session, and how they end."""

    def __init__(self, session: Session, limits: RealtimeLimits) -> None:
        self.session = session
        self.limits = limits

    async def run(self, receive: Receive) -> Outcome:
        session = self.session
        outcome = Outcome(model=session.model)
        try:
            await session.send(session.created())
        except ClientGone:
            outcome.status, outcome.close_code = 499, None
            return outcome
        reader = asyncio.create_task(self._read(receive))
        decoder = asyncio.create_task(self._decode())
        try:
            async with asyncio.timeout(self.limits.max_session_seconds):
                pending: set[asyncio.Task[Any]] = {reader, decoder}
                while decoder in pending:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    if reader in done and reader.result() == "gone":
                        outcome.status, outcome.close_code = 499, None  # CLIENT_CLOSED: nobody to tell
                        break
                    if decoder in done:
                        decoder.result()  # raises the decoder's failure
        except TimeoutError:
            await self._fail(outcome, _Fatal(SessionTimeout(
                f"the session lasted {self.limits.max_session_seconds:g} s, the limit per session",
                code="SESSION_TOO_LONG"), CLOSE_POLICY))
        except _Fatal as fatal:
            await self._fail(outcome, fatal)
        except ClientGone:
            outcome.status, outcome.close_code = 499, None
        except Exception:  # a bug, not the client's doing: logged, and the client still gets the protocol's error
            log.exception("realtime session %s failed", session.request_id)
            await self._fail(outcome, _Fatal(InternalError("internal server error"), CLOSE_SERVER))
        finally:
            for task in (reader, decoder):
                task.cancel()
            await asyncio.gather(reader, decoder, return_exceptions=True)
        outcome.audio_seconds = session.audio_seconds
        return outcome

    async def _fail(self, outcome: Outcome, fatal: _Fatal) -> None:
        outcome.status, outcome.close_code, outcome.reason = fatal.err.status, fatal.close_code, fatal.err.message
        with contextlib.suppress(Exception):  # the client may be gone: the outcome says what happened
            await self.session.send(error_event(fatal.err.message, fatal.err.status))

    async def _read(self, receive: Receive) -> str:
        session = self.session
        while True:
            await session.room()  # backpressure: the engine is behind, stop reading (TCP slows the client)
            try:
                async with asyncio.timeout(self.limits.idle_seconds):
                    raw = await receive()
            except TimeoutError:
                raise _Fatal(SessionTimeout(f"no message for {self.limits.idle_seconds:g} s; the session is closed",
                                            code="IDLE_TIMEOUT"), CLOSE_POLICY) from None
            if raw is None:
                return "gone"
            try:
                message = _parse(raw)
                if isinstance(message, AudioAppend):
                    session.append(_audio(message.audio))
                    await asyncio.sleep(0)  # the decoder's turn: queued messages must not starve it
                elif isinstance(message, SessionUpdate):
                    session.update(message.session)
                    await session.send(session.updated())
                elif isinstance(message, AudioFlush):
                    session.flush()
                elif isinstance(message, AudioEnd):
                    session.end()
                    return "end"
            except PayloadTooLarge as err:
                if err.code == "AUDIO_TOO_LONG":  # the session's audio budget is spent: nothing more can be heard
                    raise _Fatal(err, CLOSE_POLICY) from None
                await session.send(error_event(err.message, err.status))
            except GatewayError as err:  # a bad message: say so, keep the session
                await session.send(error_event(err.message, err.status))

    async def _decode(self) -> None:
        try:
            await self.session.decode_loop()
        except EngineError as exc:
            err = engine_errors(exc)
            raise _Fatal(err, CLOSE_SERVER if err.status >= 500 else CLOSE_POLICY) from None


def _parse(raw: str | bytes) -> AudioAppend | SessionUpdate | AudioFlush | AudioEnd:
    if isinstance(raw, bytes):
        raise BadRequest("binary messages are not part of the protocol: send JSON text messages (audio goes base64 "
                         "in input_audio.append)", code="INVALID_MESSAGE")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("the message is not valid JSON", code="INVALID_MESSAGE") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise BadRequest("a message is a JSON object with a 'type'", code="INVALID_MESSAGE")
    try:
        return client_message.validate_python(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]  # names and tags the caller wrote are echoed short
        where = shorten(".".join(str(p) for p in first["loc"]), 100) or "message"
        raise BadRequest(f"invalid {shorten(data['type'], 40)!r} message: {where}: {shorten(first['msg'], 200)}",
                         code="INVALID_MESSAGE") from None


def _audio(text: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("input_audio.append: 'audio' is not valid base64", code="INVALID_AUDIO") from None
    if len(data) > MAX_APPEND_BYTES:  # unreachable through the model's length bound; kept as the stated limit
        raise PayloadTooLarge(f"input_audio.append carries {len(data)} bytes; the limit is {MAX_APPEND_BYTES}",
                              code="MESSAGE_TOO_LARGE")
    return data
