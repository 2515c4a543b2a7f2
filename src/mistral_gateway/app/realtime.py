"""Realtime transcription sessions through the application layer: scope, rate limits, metering and one usage row
per session, like every operation. The session is no registry row (Mistral's spec lists no such path: it is the
SDK's ``client.audio.realtime``), so it has an ``Operation`` of its own here, recorded under its id.

The meter records the session's audio as ``prompt_tokens`` (whole seconds, rounded up: Mistral bills transcription
by ``prompt_audio_seconds``), so tokens-per-minute budgets bound audio too; the status is 200, the error that ended
the session, or 499 when the client left first.
"""

from __future__ import annotations

import math

from mistral_gateway.app.application import Application
from mistral_gateway.app.metering import CLIENT_CLOSED, Exchange
from mistral_gateway.errors import Forbidden, GatewayError
from mistral_gateway.registry import CATEGORY_SCOPES, Operation
from mistral_gateway.services.realtime import Outcome, Receive, Send
from mistral_gateway.services.tokens import Principal

__all__ = ["REALTIME", "RealtimeCalls"]

REALTIME = Operation(id="realtime_transcription", name="Realtime Transcription", category="Audio", method="GET",
                     path="/v1/audio/transcriptions/realtime", operation_id="realtime_transcription",
                     scope=CATEGORY_SCOPES["Audio"], implemented=True)


class RealtimeCalls:
    def __init__(self, application: Application) -> None:
        self.application = application

    async def admit(self, principal: Principal, dialect: str) -> Exchange:
        """Scope (403) and rate limits (429) before the WebSocket is accepted; a refusal is recorded too."""
        exchange = self.application.exchange(principal, REALTIME, dialect)
        try:
            if not principal.allows(REALTIME.scope):
                raise Forbidden(f"this token lacks the {REALTIME.scope!r} scope needed for {REALTIME.name}",
                                code="MISSING_SCOPE")
            await self.application.metering.admit(exchange)
        except GatewayError as err:
            await self.application.metering.finish(exchange, err.status)
            raise
        return exchange

    async def run(self, exchange: Exchange, model: str | None, receive: Receive, send: Send) -> Outcome:
        """The session, to its end; then its usage row (also when the server stops it midway)."""
        realtime = self.application.services.realtime
        assert realtime is not None, "Services.realtime is built by build_services"
        status = CLIENT_CLOSED
        try:
            outcome = await realtime.serve(model, receive, send)
            exchange.meter.model = outcome.model
            exchange.meter.prompt_tokens = math.ceil(outcome.audio_seconds)
            status = outcome.status
            return outcome
        finally:
            await self.application.metering.finish(exchange, status)
