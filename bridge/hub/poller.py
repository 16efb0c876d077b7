"""A `Poller`: the single writer of one stream key. It asks the upstream, detects changes,
computes each diff once, assigns ids, and publishes `Record`s through the broker.

- **Polling.** `every`: a conditional GET (`If-None-Match` / `If-Modified-Since` from the last
  answer) at the interval ±10 %. `longpoll`: the cursor from the last body goes back in the
  query, and the next request leaves as soon as an answer arrives; a long-poll that times out
  after the upstream held it is normal, not an error.
- **Change detection.** A 304 or a byte-identical body emits nothing (patch/merge streams also
  ignore a body that parses to the same JSON). Each change becomes one record — the body, or an
  RFC 6902 / RFC 7386 diff computed once, with the whole state beside it.
- **Committed only once published.** The body, validators and cursor a change came with are
  remembered only after the broker took the record: a publish that fails (Redis down) leaves
  the poller where it was, so the next poll finds the same change again. No change is lost.
- **Trouble upstream** (exceptions, non-2xx other than 304, a body over `max_snapshot`) is
  retried with backoff (`backoff.py`) and reported as a `Status` to every reader. Failures are
  logged at most once a minute per stream.
- **Notify** (`poke`, `inject`; `bridge.hub.notify`). A poke asks for a poll now, on top of
  the interval, which keeps its own schedule (a notify never delays it). Pokes coalesce: one
  poll answers every poke that came before it left; a poke while a poll is out asks for one
  more after it; and notify-triggered polls are `settings.NOTIFY_MIN_GAP` apart at least.
  While the upstream is failing, backoff decides, not pokes. A long-poll stream is always
  asking already: a poke changes nothing there. `inject` makes a given body the next state
  as if a poll had brought it (diffed, id'd, published), serialised with the polls' own
  commits.
- **Ids** are `"<epoch>-<seq>"` (item.py). A poller that takes over a stream (a new leader, a
  restarted process) starts from the last state its channel knows: a later epoch than that
  id, and that body as the base of the next diff, so nothing already published is repeated.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .. import settings
from ..broker import Record, Status
from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..routing.model import StreamSpec
from ..upstream.errors import UpstreamTooLarge
from .backoff import Backoff, parse_retry_after
from .clock import wait_future
from .context import HubContext
from .diff import diff, json_equal, loads
from .key import ChannelSpec

ACCEPT = b"application/json, */*;q=0.5"
SEQ_WIDTH = 6  # ids are "<13-digit epoch ms>-<6-digit seq>" (see item.py)
SEQ_MAX = 10**SEQ_WIDTH - 1


def poll_headers(spec: StreamSpec, vary: Headers) -> Headers:
    """The request headers of every poll: Host, the upstream's own `headers` (its service
    credentials), the route's `vary` headers (a subscriber's value wins over the upstream's
    for the same name), Accept. Nothing else of a subscriber's request."""
    named = {name for name, _ in vary}
    headers: Headers = []
    if b"host" not in named:
        headers.append((b"host", spec.upstream.authority.encode("ascii")))
    for name, value in spec.upstream.headers:
        raw = name.encode("ascii")
        if raw not in named:
            headers.append((raw, value.encode("latin-1")))
            named.add(raw)
    headers += vary
    if b"accept" not in named:
        headers.append((b"accept", ACCEPT))
    return headers


class _NotJson:
    """A parse result meaning "this body is not JSON"."""


NOT_JSON: Any = _NotJson()
_UNPARSED: Any = object()


@dataclass(frozen=True, slots=True)
class Seed:
    """The last state published on this key, as the channel knows it: where a new poller
    continues from."""

    id: str
    state: bytes


@dataclass(slots=True)
class _Change:
    """A change found in an answer, to be committed once published."""

    record: Record | None
    body: bytes
    doc: Any
    validators: Headers
    cursor: str | None


class Poller:
    """Polls one stream (`channel`) for as long as it runs; publishes and reports through the
    context's broker under the stream's key."""

    def __init__(
        self,
        context: HubContext,
        channel: ChannelSpec,
        *,
        seed: Seed | None = None,
        observe: Callable[[float, int, float | None], None] | None = None,
    ) -> None:
        # For /metrics and /streams: (seconds, status or 0, retry delay) after each poll.
        self._observe = observe
        self.context = context
        self.key = channel.key
        self.spec = channel.stream
        self.target = channel.target
        self.name = channel.name
        self.clock = context.clock
        self.log = context.log
        self._headers = poll_headers(channel.stream, channel.vary)
        self.backoff = Backoff(rng=context.rng)
        self.polls = 0
        self.errors = 0
        self.ok: bool | None = None  # the last outcome reported (None: nothing yet)
        self._body: bytes | None = None  # the last body published (its bytes decide "changed")
        self._doc: Any = _UNPARSED  # ... parsed, for patch/merge streams
        self._validators: Headers = []
        self._cursor: str | None = None
        self._prev: str | None = None
        self._warned_not_json = False
        self._logged_at = -settings.POLL_ERROR_LOG_INTERVAL
        self._suppressed = 0
        self._streak_logged = False
        self.epoch = context.epoch()
        self.seq = 0
        self.notify_polls = 0  # polls a poke brought forward
        self._poked = False  # a poke came after the last poll left
        self._notify_polled = -settings.NOTIFY_MIN_GAP  # when the last such poll left
        self._wake: asyncio.Future[None] | None = None  # resolved by a poke while resting
        self._writing = asyncio.Lock()  # one change at a time: a poll's, or an injected one
        if seed is not None:
            self._continue_from(seed)

    def _continue_from(self, seed: Seed) -> None:
        self._prev = seed.id
        self._body = seed.state
        if self.spec.emit != "snapshot":
            self._doc = _parse(seed.state)
        longpoll = self.spec.longpoll
        if longpoll is not None:
            doc = _parse(seed.state)
            cursor = None if doc is NOT_JSON else _dotted(doc, longpoll.cursor)
            if cursor is not None:
                self._cursor = cursor if isinstance(cursor, str) else json.dumps(cursor)
        head = seed.id.split("-", 1)[0]
        if head.isdigit() and int(head) >= self.epoch:
            # Ids must keep growing past what another poller (or process) handed out.
            self.epoch = int(head) + 1

    # --- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        clock = self.clock
        due = clock.now()  # the next interval (or backoff) poll: pokes never move it
        while True:
            now = clock.now()
            poked = self._poked and self.ok is not False  # failing: backoff decides
            at = max(now, self._notify_polled + settings.NOTIFY_MIN_GAP) if poked else due
            if min(at, due) > now:
                await self._rest(min(at, due) - now)
                continue  # woken by a poke, or rested: decide again
            notified = poked and at < due  # else the interval's own poll is due anyway
            self._poked = False  # this poll answers every poke so far
            if notified:
                self.notify_polls += 1
                self._notify_polled = now
            try:
                delay = await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not end the stream: log, back off, go on
                delay = self._failed(
                    f"unexpected {exc!r}", None, exc, cause="bridge failed to poll the upstream"
                )
            if not notified or self.ok is False:
                due = clock.now() + delay
            if delay <= 0:
                await asyncio.sleep(0)  # long-poll: at once, but let the loop breathe

    async def _rest(self, seconds: float) -> None:
        """Sleep `seconds`, or until a poke."""
        wake = self._wake = asyncio.get_running_loop().create_future()
        try:
            await wait_future(self.clock, wake, seconds)
        finally:
            self._wake = None

    def poke(self) -> None:
        """Someone says the stream changed: poll soon (see the module's **Notify**)."""
        self._poked = True
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def inject(self, body: bytes, content_type: str) -> bool:
        """`body` becomes the stream's next state without a poll, exactly as if a poll had
        brought it; False if it could not be published (then nothing changed)."""
        async with self._writing:
            change = _Change(None, body, self._doc, self._validators, self._cursor)
            self._detect(change, body, _UNPARSED, content_type)
            if change.record is None:
                return True  # the stream is in that state already
            try:
                await self.context.broker.publish(self.key, change.record)
            except Exception as exc:
                self.log.warning("stream %s: notify data not published: %r", self.name, exc)
                return False
            self._commit(change)
            return True

    def _request_headers(self) -> Headers:
        if self._validators:
            return self._headers + self._validators
        return self._headers

    def _poll_target(self) -> str:
        longpoll = self.spec.longpoll
        if longpoll is None or self._cursor is None:
            return self.target
        target = self.target
        if "?" not in target:
            target += "?"
        elif not target.endswith(("?", "&")):
            target += "&"
        return f"{target}{_quote(longpoll.param)}={_quote(self._cursor)}"

    async def poll_once(self) -> float:
        """One upstream request; returns the delay before the next."""
        spec = self.spec
        longpoll = spec.longpoll
        if longpoll is None:
            timeout = spec.upstream.timeout
        else:
            timeout = longpoll.timeout + settings.LONGPOLL_MARGIN
        started = self.clock.now()
        self.polls += 1
        try:
            status, headers, body = await self.context.fetcher.fetch(
                spec.upstream,
                self._poll_target(),
                self._request_headers(),
                timeout=timeout,
                max_bytes=self.context.limits.max_snapshot,
            )
        except StreamError as exc:
            held = self.clock.now() - started
            if self._observe is not None:
                self._observe(held, 0, None)
            if (
                longpoll is not None
                and exc.code is ErrorCode.UPSTREAM_TIMEOUT
                and held >= longpoll.timeout
            ):
                self._ok()  # held past its own timeout with nothing new: normal, ask again
                return 0.0
            if isinstance(exc, UpstreamTooLarge):
                return self._too_large()
            timed_out = exc.code is ErrorCode.UPSTREAM_TIMEOUT
            return self._failed(
                exc.detail, None, code=504 if timed_out else 502, cause=self._public(exc.detail)
            )
        if self._observe is not None:
            self._observe(self.clock.now() - started, status, None)
        if 200 <= status < 300:
            if len(body) > self.context.limits.max_snapshot:
                return self._too_large()
            async with self._writing:
                change = self._examine(headers, body)
                if change.record is not None:
                    try:
                        await self.context.broker.publish(self.key, change.record)
                    except Exception as exc:
                        return self._failed(
                            f"could not publish: {exc!r}",
                            None,
                            cause="the stream could not publish",
                        )
                self._commit(change)
            changed = change.record is not None
        elif status == 304:
            changed = False
        else:
            retry = parse_retry_after(_header(headers, b"retry-after"), self.clock.wall())
            challenge = b", ".join(v for n, v in headers if n == b"www-authenticate")
            return self._failed(
                f"upstream answered {status}",
                retry,
                code=status,
                cause=f"the upstream answered {status}",
                challenge=challenge.decode("latin-1"),
            )
        self._ok()
        if longpoll is None:
            assert spec.every is not None
            jitter = settings.POLL_JITTER
            return spec.every * self.context.rng.uniform(1 - jitter, 1 + jitter)
        if changed:
            return 0.0
        # Nothing new, and quickly: the upstream did not hold the request. Don't spin.
        return max(0.0, settings.LONGPOLL_MIN_GAP - (self.clock.now() - started))

    def _ok(self) -> None:
        if self.backoff.failures and self._streak_logged:
            self.log.info(
                "stream %s: upstream recovered after %d failure(s)",
                self.name,
                self.backoff.failures,
            )
        self._streak_logged = False
        self.backoff.reset()
        if self.ok is not True:
            self.ok = True
            self.context.broker.report(self.key, Status(True))

    def _too_large(self) -> float:
        limit = self.context.limits.max_snapshot
        return self._failed(
            f"upstream answer larger than max_snapshot ({limit} bytes)",
            None,
            cause="the upstream's answer is larger than max_snapshot",
        )

    def _public(self, detail: str) -> str:
        """A failure's detail as a client may read it: the upstream's address left out."""
        upstream = self.spec.upstream
        for name in (upstream.authority, upstream.host):
            if name:
                detail = detail.replace(name, "the upstream")
        return detail

    def _failed(
        self,
        why: str,
        retry_after: float | None,
        exc: Exception | None = None,
        *,
        code: int = 502,
        cause: str = "",
        challenge: str = "",
    ) -> float:
        self.errors += 1
        self.ok = False
        delay = self.backoff.next(retry_after)
        if self._observe is not None:
            self._observe(0.0, -1, delay)  # -1: not a poll, the delay before the next
        now = self.clock.now()
        if now - self._logged_at >= settings.POLL_ERROR_LOG_INTERVAL:
            more = f" (+{self._suppressed} more failures not logged)" if self._suppressed else ""
            self.log.warning(
                "stream %s: poll failed: %s; retrying in %.1fs%s",
                self.name,
                why,
                delay,
                more,
                exc_info=exc,
            )
            self._logged_at = now
            self._suppressed = 0
            self._streak_logged = True
        else:
            self._suppressed += 1
        # Plain GETs and new subscribers waiting for a first answer learn it.
        self.context.broker.report(self.key, Status(False, why, code, cause or why, challenge))
        return delay

    # --- change detection -----------------------------------------------------------------------

    def _examine(self, headers: Headers, body: bytes) -> _Change:
        """A 2xx answer: its validators and cursor, and the record if it is a change."""
        spec = self.spec
        validators = self._validators
        if spec.every is not None:
            validators = []
            etag = _header(headers, b"etag")
            if etag is not None:
                validators.append((b"if-none-match", etag))
            modified = _header(headers, b"last-modified")
            if modified is not None:
                validators.append((b"if-modified-since", modified))
        doc: Any = _UNPARSED
        cursor = self._cursor
        if spec.longpoll is not None:
            doc = _parse(body)
            found = None if doc is NOT_JSON else _dotted(doc, spec.longpoll.cursor)
            if found is not None:
                cursor = found if isinstance(found, str) else json.dumps(found)
        change = _Change(None, body, self._doc, validators, cursor)
        return self._detect(change, body, doc, _content_type(headers, body))

    def _detect(self, change: _Change, body: bytes, doc: Any, content_type: str) -> _Change:
        """`change` with its record, if `body` differs from the last state published."""
        spec = self.spec
        if body == self._body:
            return change
        if spec.emit == "snapshot":
            change.record = self._record(spec.event, body, None, content_type)
            return change
        if doc is _UNPARSED:
            doc = _parse(body)
        old = self._doc
        change.doc = doc
        if doc is not NOT_JSON and old is not NOT_JSON and old is not _UNPARSED:
            if json_equal(old, doc):
                return change  # the same JSON, spelled differently: nothing to tell
            patch = diff(spec.emit, old, doc)
        else:
            patch = None
            if doc is NOT_JSON and not self._warned_not_json:
                self._warned_not_json = True
                self.log.warning(
                    "stream %s: the body is not JSON; sending snapshots instead of %s events",
                    self.name,
                    spec.emit,
                )
        if patch is None:  # the first state, not JSON, or not expressible as a diff
            change.record = self._record("snapshot", body, None, content_type)
        else:
            change.record = self._record(spec.emit, patch, body, content_type)
        return change

    def _record(self, event: str, data: bytes, state: bytes | None, content_type: str) -> Record:
        return Record(self._next_id(), event, data, state, content_type, self._prev)

    def _commit(self, change: _Change) -> None:
        self._body = change.body
        self._doc = change.doc
        self._validators = change.validators
        self._cursor = change.cursor
        if change.record is not None:
            self._prev = change.record.id

    def _next_id(self) -> str:
        if self.seq >= SEQ_MAX:
            self.epoch = self.context.epoch()  # keeps string order == numeric order
            self.seq = 0
        self.seq += 1
        return f"{self.epoch:013d}-{self.seq:0{SEQ_WIDTH}d}"


def _header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _dotted(doc: Any, path: str) -> Any:
    """The value at a dotted path (`meta.seq`, `items.0.id`), or None."""
    for part in path.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


def _parse(body: bytes) -> Any:
    try:
        return loads(body)
    except (ValueError, RecursionError):
        return NOT_JSON


def _quote(text: str) -> str:
    return quote(text, safe="")


def _content_type(headers: Headers, body: bytes) -> str:
    value = _header(headers, b"content-type")
    if value is not None:
        return value.decode("latin-1")
    # No type given: a JSON-looking body is JSON (most stream upstreams are JSON APIs).
    return "application/json" if body.lstrip()[:1] in (b"{", b"[") else "application/octet-stream"
