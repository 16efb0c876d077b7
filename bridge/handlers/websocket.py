"""WebSocket subscribers of a stream route, on any HTTP version.

The handshake is ours (101 + Upgrade on HTTP/1.1; 200 to an extended CONNECT on HTTP/2, RFC
8441, and HTTP/3, RFC 9220); after it, `wsproto.Connection` parses and builds frames over the
exchange's tunnel bytes. Stream events are pre-rendered frames shared by every client (server
frames are unmasked), written by the hub's fan-out through an `ExchangeSink`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random

from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.frame_protocol import CloseReason

from .. import settings
from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..hub.hub import Hub
from ..hub.item import Format
from ..hub.key import vary_headers
from ..routing.model import Route, StreamSpec
from ..routing.paths import substitute
from ..stream.exchange import Exchange
from ..upstream import UpstreamPool
from .authorize import Admission, admit
from .sink import ExchangeSink, finish_subscription
from .wshandshake import accept, handshake_problem, origin_allowed

log = logging.getLogger("bridge.websocket")


class WsState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"  # we sent a close frame and wait for the peer's
    CLOSED = "closed"


class WebSocketHandler:
    """Stream route WebSocket subscribers: stream events out, `send:` messages in."""

    def __init__(self, hub: Hub, pool: UpstreamPool, *, max_message: int) -> None:
        self.hub = hub
        self.pool = pool
        self.max_message = max_message

    async def __call__(
        self, exchange: Exchange, route: Route, params: dict[str, str], last_id: str | None
    ) -> None:
        spec = route.stream
        assert spec is not None
        problem = handshake_problem(exchange)
        if problem is not None:
            raise StreamError(problem[0], problem[1], problem[2])
        if not origin_allowed(exchange, spec.origins):
            raise StreamError(ErrorCode.FORBIDDEN, "cross-origin WebSocket refused")
        admission = await admit(self.hub, exchange, route, params)  # `authorize`, new `vary`
        if admission is None:
            return  # refused, and answered
        session = WebSocketSession(exchange, spec, self, params)
        await session.run(route, last_id, admission)


class WebSocketSession:
    def __init__(
        self,
        exchange: Exchange,
        spec: StreamSpec,
        handler: WebSocketHandler,
        params: dict[str, str],
    ) -> None:
        self.exchange = exchange
        self.spec = spec
        self.handler = handler
        self.params = params
        self.ws = Connection(ConnectionType.SERVER)
        self.state = WsState.OPEN
        self.message: list[bytes | str] = []
        self.message_size = 0
        self.fragments = 0  # frames of the message being received
        self.frames = 0  # frames received in the current `WS_FRAME_WINDOW`
        self.window_end = 0.0
        self.pong: Pong | None = None  # the answer to the latest ping of a read (see below)
        self.pongs = 0  # pings answered one by one in the current `WS_FRAME_WINDOW`
        self.outbox: asyncio.Queue[TextMessage | BytesMessage] = asyncio.Queue(
            settings.WS_SEND_IN_FLIGHT
        )
        self.heard = True  # anything received since the last liveness check
        self.sink: ExchangeSink

    async def run(self, route: Route, last_id: str | None, admission: Admission) -> None:
        exchange = self.exchange
        fmt = Format.WS_RAW if self.spec.ws_format == "raw" else Format.WS_ENVELOPE
        sink = self.sink = ExchangeSink(exchange, self._lagging_close, tunnel=True)
        subscription = self.handler.hub.subscribe(
            route, self.params, exchange.request.headers, sink, fmt, last_id
        )
        exchange.access.kind = "websocket"
        exchange.on_drain = subscription.on_drain
        # A recheck that refuses ends it with 1008 "policy violation" (RFC 6455 §7.4.1).
        unwatch = admission.watch(lambda _: self.close(1008, "authorization refused"))
        worker = asyncio.create_task(self._sender()) if self.spec.send else None
        try:
            await accept(exchange)
            sink.open()
            try:
                await self._read_loop()
            except StreamError:
                raise  # the client went away, or the exchange itself failed: nothing to say
            except Exception:
                # RFC 6455 §7.4.1: 1011, "an unexpected condition prevented the request".
                log.exception("WebSocket session on %s failed", exchange.request.target)
                self.close(1011, "internal error")
        finally:
            unwatch()
            if worker is not None:
                worker.cancel()
            finish_subscription(exchange, subscription)
            sink.detach()  # and so lets go of this session (see ExchangeSink.detach)
        if not exchange.aborted:
            await exchange.end()

    def _write(self, event: object) -> None:
        if not self.exchange.aborted:
            self.exchange.write_prerendered(self.ws.send(event))  # type: ignore[arg-type]

    def close(self, code: int, reason: str = "") -> None:
        """Start our close handshake; the read loop waits `CLOSE_TIMEOUT` for the answer."""
        if self.state is WsState.OPEN:
            self.state = WsState.CLOSING
            access = self.exchange.access
            if access.ws_close is None:
                access.ws_close = code  # the access log says who ended it, and why
            self.sink.detach()  # no hub frame may follow our close frame (RFC 6455 §5.5.1)
            self._write(CloseConnection(code=code, reason=reason))

    def fail(self, code: int, reason: str) -> None:
        """Close frame, then drop the connection without waiting for the answer: RFC 6455
        §7.1.7 "Fail the WebSocket Connection", for a client that is flooding us."""
        self.close(code, reason)
        self.state = WsState.CLOSED

    def _lagging_close(self, final: bytes | None) -> None:
        if final is None:
            self.close(1001, "server shutting down")  # RFC 6455 §7.4.1 "going away"
        else:
            # IANA-registered 1013 "try again later": the client resumes with last_event_id.
            self.close(1013, "subscriber too slow, reconnect")

    async def _read_loop(self) -> None:
        exchange = self.exchange
        # The hub pings every idle channel each `heartbeat`; past this much silence from the
        # peer (no pong, no message) we ping it ourselves, and one more such silence ends it.
        interval = self.spec.heartbeat * random.uniform(*settings.WS_PEER_SILENCE)
        while self.state is not WsState.CLOSED and not exchange.aborted:
            closing = self.state is WsState.CLOSING
            try:
                data = await exchange.receive(
                    timeout=settings.CLOSE_TIMEOUT if closing else interval
                )
            except StreamError as exc:
                if exc.code is not ErrorCode.REQUEST_TIMEOUT:
                    raise
                if closing:
                    # RFC 6455 §7.1.1: no close answer in time, drop the connection.
                    self.state = WsState.CLOSED
                    return
                if not self.heard:
                    # The peer answered neither our ping nor anything else: it is gone, or
                    # stuck. Say so (1011, as browsers' keepalive does) and drop it at once.
                    self.close(1011, "ping timeout")
                    self.state = WsState.CLOSED
                    return
                self.heard = False
                self._write(Ping(b"bridge"))
                continue
            if not data:
                self.state = WsState.CLOSED
                return
            self.heard = True
            self.ws.receive_data(data)
            now = exchange.port.loop.time()
            if now >= self.window_end:
                self.window_end = now + settings.WS_FRAME_WINDOW
                self.frames = 0
                self.pongs = 0
            for event in self.ws.events():
                self.frames += 1
                if self.frames > settings.WS_MAX_FRAMES:
                    self.fail(CloseReason.POLICY_VIOLATION, "too many frames")
                    return
                await self._on_event(event)
                if self.state is WsState.CLOSED:
                    break
            pong, self.pong = self.pong, None
            if pong is not None and self.state is WsState.OPEN:
                # Past the sane rate, RFC 6455 §5.5.3: with several pings unanswered, a pong to
                # the most recent one is enough; a read full of pings costs one pong.
                self._write(pong)
            # Our pongs and `send:` answers go to a client that may not be reading: while
            # what we queued for it is over the high watermark, read nothing more from it.
            await exchange.drain()

    async def _on_event(self, event: object) -> None:
        if isinstance(event, (TextMessage, BytesMessage)):
            if self.state is not WsState.OPEN:
                return  # after our close frame, data from the peer is only drained
            self.message.append(
                bytes(event.data) if isinstance(event.data, bytearray) else event.data
            )
            self.message_size += len(event.data)
            self.fragments += 1
            if self.fragments > settings.WS_MAX_FRAGMENTS:
                # Each frame costs parsing however small: a message in a million 1-byte (or
                # empty) fragments is too big in frames long before it is in bytes.
                self.message.clear()
                self.fail(CloseReason.MESSAGE_TOO_BIG, "too many fragments")
                return
            if self.message_size > self.handler.max_message:
                self.message.clear()
                self.close(CloseReason.MESSAGE_TOO_BIG, "message too big")
                return
            if event.message_finished:
                parts, self.message, self.message_size = self.message, [], 0
                self.fragments = 0
                if self.spec.send:
                    whole: TextMessage | BytesMessage
                    if isinstance(event, TextMessage):
                        whole = TextMessage(data="".join(parts))  # type: ignore[arg-type]
                    else:
                        whole = BytesMessage(data=b"".join(parts))  # type: ignore[arg-type]
                    try:
                        # A full queue stops reading: backpressure on the client, bounded.
                        async with asyncio.timeout(
                            settings.WS_SEND_QUEUE_TIMEOUT
                        ):  # not wait_for (3.11)
                            await self.outbox.put(whole)
                    except TimeoutError:
                        self.close(CloseReason.POLICY_VIOLATION, "too many messages in flight")
                else:
                    # Nothing here takes messages: say so (RFC 6455 §7.4.1, 1003 "a type of
                    # data it cannot accept") rather than drop them and leave the client
                    # believing it was heard.
                    log.debug(
                        "WebSocket message on %s, a stream without send:; closing with 1003",
                        self.exchange.request.target,
                    )
                    self.close(CloseReason.UNSUPPORTED_DATA, "this stream takes no messages")
        elif isinstance(event, Ping):
            if self.state is WsState.OPEN:  # wsproto sends no pong once we sent our close
                self.pongs += 1
                if self.pongs <= settings.WS_PONGS_PER_WINDOW:
                    self._write(event.response())  # every ping answered while the rate is sane
                else:
                    self.pong = event.response()  # a flood: written after this read's events
        elif isinstance(event, Pong):
            pass
        elif isinstance(event, CloseConnection):
            if self.state is WsState.OPEN:
                # The peer closed (or wsproto found a protocol error): answer with its code.
                access = self.exchange.access
                if access.ws_close is None:
                    access.ws_close = int(event.code)
                self.state = WsState.CLOSING
                self.sink.detach()
                self._write(event.response())
            self.state = WsState.CLOSED

    async def _sender(self) -> None:
        """POST client messages to `send:` in order; answers go back to this client only."""
        spec = self.spec
        assert spec.send is not None
        target = substitute(spec.send, self.params)
        # The same headers a poll of this stream carries (`vary`), and nothing else of the
        # client's request: computed once, the request does not change.
        forwarded = vary_headers(spec, self.exchange.request.headers)
        while True:
            message = await self.outbox.get()
            text = isinstance(message, TextMessage)
            data = message.data
            body = data.encode() if isinstance(data, str) else bytes(data)
            headers: Headers = [
                *forwarded,
                (b"host", spec.upstream.authority.encode()),
                (
                    b"content-type",
                    b"text/plain; charset=utf-8" if text else b"application/octet-stream",
                ),
                (b"content-length", str(len(body)).encode()),
            ]
            try:
                status, answer = await self._post(target, headers, body)
            except StreamError as exc:
                log.warning("send: POST %s failed: %s", target, exc.detail)
                self.close(1011, "upstream unavailable")
                return
            except Exception:
                log.exception("send: POST %s failed", target)
                self.close(1011, "internal error")
                return
            # Any 2xx is an answer, an empty body an empty message (an echo of an empty
            # message is one); only 204 No Content says there is nothing to send back.
            if 200 <= status < 300 and status != 204 and self.state is WsState.OPEN:
                if text:
                    self._write(TextMessage(data=answer.decode("utf-8", "replace")))
                else:
                    self._write(BytesMessage(data=answer))

    async def _post(self, target: str, headers: Headers, body: bytes) -> tuple[int, bytes]:
        upstream = self.spec.upstream
        pool = self.handler.pool
        response = await pool.request(
            upstream, "POST", target, headers, body, content_length=len(body)
        )
        try:
            pieces: list[bytes] = []
            size = 0
            async for piece in response:
                size += len(piece)
                if size > self.handler.max_message:
                    raise StreamError(ErrorCode.UPSTREAM_UNREACHABLE, "send: answer too large")
                pieces.append(piece)
            return response.status, b"".join(pieces)
        finally:
            await response.aclose()
