"""`POST /notify` on the admin listener: the app's "this changed" (`bridge.hub.notify`).

    Authorization: Bearer <notify.token>
    {"path": "/prices/ACME"}                  every live channel that path reaches polls now
    {"route": "/prices/{symbol}"}             every live channel of the route polls now
    {"path": "/prices/ACME", "data": <value>} <value> is that stream's next state, no poll

Answers, each a small JSON object: `202 {"channels": N}` (N: this process's channels; with a
cluster broker 0 is possible, another process may serve them); `401` without the right token
(compared in constant time, `hmac.compare_digest`), with `WWW-Authenticate: Bearer`; `400`
with the reason for a bad body; `404` when no stream route matches (or, in one process, no
channel of it is live); `409` for `data` on a `vary` route (one value would reach every user);
`413` past `settings.NOTIFY_MAX_BODY`. With `notify:` off the resource does not exist: `404`
(not 401, which would say a token could open it).

`data`: a string is the state's bytes as they are (UTF-8); any other JSON value its compact
JSON text. Both then go exactly the way a polled body goes (diffed, id'd, history, resume).

The admin listener writes no access-log lines (scrapes would flood it); a notify is the app
writing, so each gets one, as `POST /notify` with `route="/notify"` and a `note` saying what
became of it.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import TYPE_CHECKING, Any

from .. import settings
from ..accesslog import AccessEntry
from ..hub.notify import Notifier
from ..stream.exchange import Exchange

if TYPE_CHECKING:
    from ..server.run import Bridge

log = logging.getLogger("bridge.notify")

ROUTE = "/notify"
_KEYS = frozenset({"path", "route", "data"})
_VERSIONS = {"1.0": "HTTP/1.0", "1.1": "HTTP/1.1", "2": "HTTP/2.0", "3": "HTTP/3"}


class Refused(Exception):
    """A notify answered with an error: its status, outcome (for /metrics) and reason."""

    def __init__(self, status: int, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.outcome = outcome
        self.reason = reason


class NotifyEndpoint:
    def __init__(self, bridge: Bridge, notifier: Notifier) -> None:
        self.bridge = bridge
        self.notifier = notifier

    async def __call__(self, exchange: Exchange) -> None:
        config = self.bridge.config.notify
        if exchange.request.method != "POST":
            allow = [(b"allow", b"POST")]
            await _answer(exchange, 405, {"error": "POST only"}, allow)
            return
        if config is None:
            await _answer(exchange, 404, {"error": "notify is off (no notify: in the config)"})
            self._log(exchange, "off")
            return
        tally = self.notifier.tally
        try:
            _authorize(exchange, config.token)
            body = await _body(exchange)
            channels = self._notify(body)
        except Refused as refused:
            tally.count("endpoint", refused.outcome)
            extra = []
            if refused.status == 401:
                extra = [(b"www-authenticate", b'Bearer realm="bridge notify"')]
            await _answer(exchange, refused.status, {"error": refused.reason}, extra)
            self._log(exchange, refused.outcome)
            return
        tally.count("endpoint", "accepted")
        await _answer(exchange, 202, {"channels": channels})
        self._log(exchange, f"accepted channels={channels}")

    def _notify(self, body: dict[str, Any]) -> int:
        notifier = self.notifier
        if "route" in body:
            route = notifier.route(body["route"])
            if route is None:
                raise Refused(404, "not_found", "no stream route is written so")
            count = notifier.poll(route, None)
            if not count and not notifier.clustered:
                raise Refused(404, "not_found", "no live channel of that route")
            return count
        found = notifier.resolve(body["path"])
        if found is None:
            raise Refused(404, "not_found", "the path reaches no stream route")
        route, params = found
        if "data" in body:
            assert route.stream is not None
            if route.stream.vary:
                raise Refused(409, "conflict", "data on a vary route would reach every user")
            data, content_type = state_of(body["data"])
            if len(data) > self.bridge.config.limits.max_snapshot:
                raise Refused(413, "too_large", "data over limits.max_snapshot")
            count = notifier.publish(route, params, data, content_type)
        else:
            count = notifier.poll(route, params)
        if not count and not notifier.clustered:
            raise Refused(404, "not_found", "no live channel on that path")
        return count

    def _log(self, exchange: Exchange, what: str) -> None:
        access_log = self.bridge.access_log
        if access_log is None:
            return
        request = exchange.request
        agent = next((v for n, v in request.headers if n == b"user-agent"), None)
        try:
            access_log.log(
                AccessEntry(
                    client_ip=exchange.client_ip,
                    time=exchange.access.started,
                    method=request.method,
                    target=request.target,
                    http_version=_VERSIONS.get(request.http_version, request.http_version),
                    status=exchange.status or 0,
                    bytes_sent=exchange.bytes_sent,
                    referer=None,
                    user_agent=agent.decode("latin-1") if agent is not None else None,
                    duration=exchange.duration,
                    upstream_status=None,
                    route=ROUTE,
                    note=f"notify {what}",
                    request_id=exchange.access.request_id,
                )
            )
        except Exception:  # a full disk must not fail the notify
            log.exception("access log write failed")


def state_of(data: Any) -> tuple[bytes, str]:
    """A notify's `data` as a state: a string as it is, another value as compact JSON."""
    if isinstance(data, str):
        body = data.encode("utf-8", "surrogatepass")
        looks_json = body.lstrip()[:1] in (b"{", b"[")
        return body, ("application/json" if looks_json else "text/plain; charset=utf-8")
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text.encode(), "application/json"


def _authorize(exchange: Exchange, token: str) -> None:
    given = b""
    for name, value in exchange.request.headers:
        if name == b"authorization":
            scheme, _, credentials = value.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                given = credentials.strip()
    # Constant time in the token's contents: a wrong guess learns nothing from the timing.
    if not hmac.compare_digest(given, token.encode()):
        raise Refused(401, "unauthorized", "Authorization: Bearer <notify.token> required")


async def _body(exchange: Exchange) -> dict[str, Any]:
    limit = settings.NOTIFY_MAX_BODY
    for name, value in exchange.request.headers:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise Refused(413, "too_large", f"body over {limit} bytes")
    pieces: list[bytes] = []
    size = 0
    while True:
        piece = await exchange.receive()  # bounded by the connection's body timeout
        if not piece:
            break
        size += len(piece)
        if size > limit:
            raise Refused(413, "too_large", f"body over {limit} bytes")
        pieces.append(piece)
    try:
        body = json.loads(b"".join(pieces))
    except (ValueError, RecursionError):
        raise Refused(400, "bad_request", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "bad_request", 'expected an object: {"path": "/..."}')
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise Refused(400, "bad_request", f"unknown key(s): {', '.join(unknown)}")
    if ("path" in body) == ("route" in body):
        raise Refused(400, "bad_request", 'give one of "path" or "route"')
    named = body.get("path", body.get("route"))
    if not isinstance(named, str) or not named.startswith("/"):
        raise Refused(400, "bad_request", "path/route: a string starting with '/'")
    if "data" in body and "route" in body:
        raise Refused(400, "bad_request", 'data needs a "path" (one stream), not a route')
    return body


async def _answer(
    exchange: Exchange,
    status: int,
    payload: dict[str, Any],
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(payload).encode() + b"\n"
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]
    await exchange.respond(status, headers, body)
