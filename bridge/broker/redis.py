"""`RedisBroker`: the hub's `Broker` over Redis, so a cluster of bridge processes (on one machine
or many) polls each stream key once and every process fans out to its own subscribers.

Per stream key `K` (the channel's digest; `{K}` is a Redis Cluster hash tag, so one key's Redis
keys share a slot and the Lua scripts below may touch them together):

- `bridge:{K}:lease` — the leader: `SET … NX PX lease`, renewed every third of the lease by a
  compare-and-`PEXPIRE` script. Only the leader runs a `Poller`. A leader that cannot renew
  (Redis gone, or another process took over) stops polling before its lease can have expired.
- `bridge:{K}:items` — a Redis Stream of records. Entry ids *are* bridge's ids
  (`<epoch ms>-<seq>` is Redis's own id form), so `Last-Event-ID` means the same on every
  process and across restarts, and Redis itself refuses an id that does not grow. Records are
  added by a script that first checks the lease (fencing: a deposed leader cannot publish) with
  `XADD … MAXLEN ~ history`, and the stream expires a day after its last change.
- `bridge:{K}:status` — the leader's poll outcomes (failures, recovery), so a plain GET waiting
  on a follower gives up as soon as the upstream fails, like it does on the leader. Kept
  short (`BROKER_STATUS_KEEP`) and expiring like the records.
- `bridge:{K}:interest` — a sorted set: process → expiry (now + a few leases), refreshed while
  the process has the channel. The leader's channel keeps lingering while any other process is
  interested: the linger works cluster-wide.

Notices (an app's "this changed", `Notice`) go to every process on one pub/sub channel,
`bridge:notify`, as JSON: fire and forget, since a notice only asks for an earlier poll (or
hands the leader a state) and the interval poll stays the safety net. A process listens once it
has a channel of its own (a process with none leads nothing), and skips its own notices,
which reached its listener at once.

Every process reads all its keys with one `XREAD BLOCK` on one connection, so a change costs
one XADD plus one XREAD answer per process — O(processes), whatever the subscriber count.

Faults: every command has a timeout (`settings.BROKER_OP_TIMEOUT`). A failing Redis is retried
with backoff and logged at most every `BROKER_ERROR_LOG_INTERVAL`; subscribers stay connected
(their channel's heartbeats do not depend on Redis); readers resume from their last entry id,
and a reader that finds a hole (`Record.prev`) sends its subscribers a reset. Unreachable at
start, bridge serves anyway and keeps trying.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from .. import settings
from ..routing.model import BrokerConfig
from .base import Lease, Listener, Notice, Record, Status

T = TypeVar("T")

# Renew the lease only if it is still ours.
RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
# Give the lease up only if it is still ours (a stopping leader hands over at once).
RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
# Fenced publish: only the lease holder adds, and XADD refuses an id not above the last one.
PUBLISH = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('NOTLEADER the lease is held by another process')
end
redis.call('xadd', KEYS[2], 'MAXLEN', '~', ARGV[2], ARGV[3], unpack(ARGV, 5))
redis.call('pexpire', KEYS[2], ARGV[4])
return 1
"""


class BrokerUnavailable(Exception):
    """Redis did not answer (down, restarting, unreachable, or too slow)."""


class LeaseLost(Exception):
    """A publish was refused: another process leads this key now."""


def redis_id(item_id: str) -> str:
    """bridge's `"<13-digit ms>-<6-digit seq>"` as a Redis stream id (`ms-seq`, no padding)."""
    ms, _, seq = item_id.partition("-")
    return f"{int(ms)}-{int(seq)}"


def _id_key(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or b"0")


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def decode_record(fields: dict[bytes, bytes]) -> Record:
    return Record(
        id=fields[b"i"].decode("ascii"),
        event=fields[b"e"].decode("utf-8"),
        data=fields[b"d"],
        state=fields.get(b"s"),
        content_type=fields[b"t"].decode("latin-1"),
        prev=_text(fields.get(b"p")),
    )


def encode_record(record: Record) -> list[bytes | str]:
    fields: list[bytes | str] = [
        b"i",
        record.id,
        b"e",
        record.event,
        b"d",
        record.data,
        b"t",
        record.content_type,
    ]
    if record.state is not None:
        fields += [b"s", record.state]
    if record.prev is not None:
        fields += [b"p", record.prev]
    return fields


def encode_notice(notice: Notice, instance: str) -> bytes:
    """A notice as the JSON published on the notice channel (raises UnicodeDecodeError for
    `data` that is not UTF-8, which the notify endpoint never makes)."""
    message: dict[str, Any] = {
        "by": instance,
        "route": notice.route,
        "params": dict(notice.params) if notice.params is not None else None,
    }
    if notice.data is not None:
        message["data"] = notice.data.decode("utf-8")
        message["type"] = notice.content_type
    return json.dumps(message, separators=(",", ":")).encode()


def decode_notice(payload: bytes, instance: str) -> Notice | None:
    """A published notice; None for this process's own, or one bridge did not write."""
    try:
        message = json.loads(payload)
        if message["by"] == instance:
            return None
        params = message["params"]
        data = message.get("data")
        return Notice(
            route=str(message["route"]),
            params=None if params is None else tuple((str(k), str(v)) for k, v in params.items()),
            data=None if data is None else str(data).encode(),
            content_type=str(message.get("type", "")),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class _Key:
    """What this process knows about one stream key."""

    __slots__ = (
        "cursor",
        "history",
        "interest",
        "items",
        "join",
        "key",
        "lease",
        "listener",
        "lost",
        "ready",
        "status",
        "status_cursor",
    )

    def __init__(self, key: str, listener: Listener, history: int) -> None:
        self.key = key
        self.listener = listener
        self.history = history
        base = f"bridge:{{{key}}}"
        self.items = f"{base}:items".encode()
        self.status = f"{base}:status".encode()
        self.lease = f"{base}:lease".encode()
        self.interest = f"{base}:interest".encode()
        self.cursor: bytes | None = None  # the last items entry delivered; None: not read yet
        self.status_cursor: bytes = b"0-0"
        self.ready = asyncio.Event()  # the history went to the listener
        self.lost = asyncio.Event()  # a publish found the lease taken
        self.join: asyncio.Task[None] | None = None


class RedisBroker:
    def __init__(
        self,
        config: BrokerConfig,
        *,
        log: logging.Logger | None = None,
        instance: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.lease_seconds = config.lease
        self.log = log or logging.getLogger("bridge.broker")
        self.rng = rng or random.Random()
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        pool = BlockingConnectionPool.from_url(
            config.url,
            max_connections=settings.BROKER_MAX_CONNECTIONS,
            timeout=settings.BROKER_OP_TIMEOUT,
            socket_timeout=settings.BROKER_OP_TIMEOUT + settings.BROKER_READ_BLOCK,
            socket_connect_timeout=settings.BROKER_OP_TIMEOUT,
            retry=Retry(NoBackoff(), 0),  # retries are ours, with backoff and a log line
        )
        self.redis: Redis = Redis(connection_pool=pool)
        self._renew = self.redis.register_script(RENEW)
        self._release = self.redis.register_script(RELEASE)
        self._publish = self.redis.register_script(PUBLISH)
        self.keys: dict[str, _Key] = {}
        self._streams: dict[bytes, _Key] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._interest: asyncio.Task[None] | None = None
        self._reports = 0
        self._joined = asyncio.Event()
        self._down_since: float | None = None
        self._logged_at = -settings.BROKER_ERROR_LOG_INTERVAL
        self._closed = False
        self.commands = 0  # round trips sent
        self._hello_pending = False
        self._notice_listener: Callable[[Notice], None] | None = None
        self._notice_reader: asyncio.Task[None] | None = None
        self._notices_out = 0  # notices being published

    # --- Redis calls ----------------------------------------------------------------------------

    async def _call(self, command: Awaitable[T], extra: float = 0.0) -> T:
        """One Redis round trip under a timeout; any failure but a refusal is BrokerUnavailable."""
        self.commands += 1
        try:
            result = await asyncio.wait_for(command, settings.BROKER_OP_TIMEOUT + extra)
        except ResponseError:
            self._up()
            raise
        except (RedisError, OSError, TimeoutError) as exc:
            self._down(exc)
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc
        self._up()
        return result

    async def _entries(self, command: Awaitable[Any]) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """A stream range (XRANGE / XREVRANGE) under `_call`, typed as redis-py returns it
        (raw bytes: the client does not decode)."""
        entries = await self._call(command)
        return list(entries or ())

    def _down(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        if now - self._logged_at >= settings.BROKER_ERROR_LOG_INTERVAL:
            self._logged_at = now
            self.log.error(
                "broker %s unreachable (%s); serving on, subscribers stay connected, retrying",
                self.config.shown,
                str(exc) or type(exc).__name__,
            )

    def _up(self) -> None:
        if self._down_since is not None:
            self.log.warning(
                "broker %s reachable again after %.1fs",
                self.config.shown,
                time.monotonic() - self._down_since,
            )
            self._down_since = None
            self._logged_at = -settings.BROKER_ERROR_LOG_INTERVAL

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def start(self) -> None:
        """Check Redis now (a clear log line at startup), without delaying the start; built
        before the event loop runs, the check waits for the first subscriber."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._hello_pending = True
            return
        self._hello_pending = False
        self._spawn(self._hello(), "broker hello")

    async def _hello(self) -> None:
        delay = settings.BROKER_RETRY_BASE
        while not self._closed:
            try:
                await self._call(self.redis.ping())
            except BrokerUnavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, settings.BROKER_RETRY_MAX)
                continue
            self.log.info("broker %s connected", self.config.shown)
            return

    # --- readers --------------------------------------------------------------------------------

    def subscribe(self, key: str, listener: Listener, history: int) -> None:
        k = _Key(key, listener, max(1, history))
        self.keys[key] = k
        self._streams[k.items] = k
        self._streams[k.status] = k
        if self._hello_pending:
            self.start()
        k.join = self._spawn(self._join(k), f"broker join {key}")
        if self._reader is None:
            self._reader = self._spawn(self._read_loop(), "broker read")
            self._interest = self._spawn(self._interest_loop(), "broker interest")
        if self._notice_reader is None and self._notice_listener is not None:
            self._notice_reader = self._spawn(self._notice_loop(), "broker notices")
        self._refresh_interest_soon(k)

    def unsubscribe(self, key: str, listener: Listener) -> None:
        k = self.keys.get(key)
        if k is None or k.listener is not listener:
            return
        del self.keys[key]
        self._streams.pop(k.items, None)
        self._streams.pop(k.status, None)
        if k.join is not None:
            k.join.cancel()
        if not self._closed:
            self._spawn(self._forget(k), f"broker forget {key}")

    async def _forget(self, k: _Key) -> None:
        with contextlib.suppress(BrokerUnavailable, ResponseError):
            await self._call(self.redis.zrem(k.interest, self.instance))

    async def _join(self, k: _Key) -> None:
        """Load the stored history for a new channel (waiting for it at most
        BROKER_HISTORY_WAIT: past that, the channel starts without and catches up later)."""
        deadline = time.monotonic() + settings.BROKER_HISTORY_WAIT
        delay = settings.BROKER_RETRY_BASE
        while True:
            try:
                entries = await self._entries(self.redis.xrevrange(k.items, count=k.history))
                statuses = await self._entries(self.redis.xrevrange(k.status, count=1))
                break
            except (BrokerUnavailable, ResponseError):
                if not k.ready.is_set() and time.monotonic() >= deadline:
                    k.listener.on_history(())
                    k.ready.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, settings.BROKER_RETRY_MAX)
        records = [r for r in (self._decode(f) for _, f in reversed(entries)) if r is not None]
        k.status_cursor = statuses[0][0] if statuses else b"0-0"
        k.cursor = entries[0][0] if entries else b"0-0"
        if not k.ready.is_set():
            k.listener.on_history(records)
            k.ready.set()
        elif records:
            k.listener.on_record(records[-1])  # late: only the current state still matters
        if statuses and statuses[0][1].get(b"ok") == b"0":
            # The leader's last word was a failure, recently: a plain GET here waiting for a
            # first state should hear it now, not at the leader's next attempt.
            age = time.time() - _id_key(statuses[0][0])[0] / 1000
            if age < settings.BACKOFF_MAX + self.lease_seconds:
                k.listener.on_status(_status(statuses[0][1]))
        self._joined.set()

    def _decode(self, fields: dict[bytes, bytes]) -> Record | None:
        """An entry as a record; None (logged) for one bridge did not write."""
        try:
            return decode_record(fields)
        except (KeyError, ValueError):  # UnicodeDecodeError is a ValueError
            self.log.warning("broker: skipping a malformed stream entry (fields %s)", list(fields))
            return None

    def _advance(self, k: _Key, entry_id: bytes) -> bool:
        """Move the key's cursor to `entry_id` if that is later; False if it is not."""
        if k.cursor is not None and _id_key(entry_id) <= _id_key(k.cursor):
            return False
        k.cursor = entry_id
        return True

    async def _read_loop(self) -> None:
        """One XREAD BLOCK for every key this process reads, on one connection."""
        delay = settings.BROKER_RETRY_BASE
        block = settings.BROKER_READ_BLOCK
        while not self._closed:
            streams: dict[bytes, bytes] = {}
            for k in self.keys.values():
                if k.cursor is not None:
                    streams[k.items] = k.cursor
                    streams[k.status] = k.status_cursor
            if not streams:
                self._joined.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._joined.wait(), block)
                continue
            try:
                reply = await self._call(
                    self.redis.xread(
                        streams,  # type: ignore[arg-type]
                        count=settings.BROKER_READ_COUNT,
                        block=int(block * 1000),
                    ),
                    extra=block,
                )
            except (BrokerUnavailable, ResponseError):
                await asyncio.sleep(delay * self.rng.uniform(0.5, 1.0))
                delay = min(delay * 2, settings.BROKER_RETRY_MAX)
                continue
            delay = settings.BROKER_RETRY_BASE
            try:
                self._deliver(reply)
            except Exception:  # a bug in one channel must not stop every key's reads
                self.log.exception("broker: delivering records failed")

    def _deliver(self, reply: Any) -> None:
        pairs = reply.items() if isinstance(reply, dict) else (reply or ())
        for name, entries in pairs:
            k = self._streams.get(name)
            if k is None or self.keys.get(k.key) is not k:
                continue  # left while the read was out
            if name == k.items:
                for entry_id, fields in entries:
                    if self._advance(k, entry_id) and (record := self._decode(fields)):
                        k.listener.on_record(record)
            else:
                for entry_id, fields in entries:
                    k.status_cursor = entry_id
                    if fields.get(b"by") != self.instance.encode():
                        k.listener.on_status(_status(fields))

    async def _catch_up(self, k: _Key) -> None:
        """Deliver every entry after the key's cursor (before this process starts polling)."""
        if k.cursor is None:
            entries = await self._entries(self.redis.xrevrange(k.items, count=1))
        else:
            entries = await self._entries(
                self.redis.xrange(k.items, min=b"(" + k.cursor, count=settings.BROKER_READ_COUNT)
            )
        for entry_id, fields in entries:
            if self._advance(k, entry_id) and (record := self._decode(fields)):
                k.listener.on_record(record)
        if k.cursor is None:
            k.cursor = b"0-0"

    # --- interest -------------------------------------------------------------------------------

    def _interest_ttl_ms(self) -> int:
        return int(self.lease_seconds * 3 * 1000)

    def _refresh_interest_soon(self, k: _Key) -> None:
        self._spawn(self._refresh([k]), f"broker interest {k.key}")

    async def _refresh(self, keys: list[_Key]) -> None:
        if not keys:
            return
        now = int(time.time() * 1000)
        ttl = self._interest_ttl_ms()
        pipe = self.redis.pipeline(transaction=False)
        for k in keys:
            pipe.zadd(k.interest, {self.instance: now + ttl})
            pipe.zremrangebyscore(k.interest, "-inf", now)
            pipe.pexpire(k.interest, ttl)
        with contextlib.suppress(BrokerUnavailable, ResponseError):
            await self._call(pipe.execute())

    async def _interest_loop(self) -> None:
        """This process's interest in each of its keys, refreshed in one pipeline per tick."""
        while not self._closed:
            await asyncio.sleep(self.lease_seconds)
            await self._refresh(list(self.keys.values()))

    async def interest_elsewhere(self, key: str) -> int:
        k = self.keys.get(key)
        if k is None:
            return 0
        now = int(time.time() * 1000)
        try:
            members = await self._call(self.redis.zrangebyscore(k.interest, now, "+inf"))
        except (BrokerUnavailable, ResponseError):
            return 0  # unknown: stop rather than poll for nobody
        mine = self.instance.encode()
        return sum(1 for member in members if member != mine)

    # --- notices --------------------------------------------------------------------------------

    def on_notice(self, listener: Callable[[Notice], None]) -> None:
        self._notice_listener = listener

    def notify(self, notice: Notice) -> bool:
        if self._notice_listener is not None:
            self._notice_listener(notice)  # this process at once; the others through Redis
        if self._closed or self._notices_out >= settings.NOTIFY_MAX_PENDING:
            return False
        try:
            payload = encode_notice(notice, self.instance)
        except UnicodeDecodeError:
            return False
        self._notices_out += 1
        self._spawn(self._send_notice(payload), "broker notice")
        return True

    async def _send_notice(self, payload: bytes) -> None:
        try:
            with contextlib.suppress(BrokerUnavailable, ResponseError):
                await self._call(self.redis.publish(settings.NOTIFY_CHANNEL, payload))
        finally:
            self._notices_out -= 1

    async def _notice_loop(self) -> None:
        """Listen on the notice channel for as long as the broker runs, resubscribing after
        a Redis failure (notices sent meanwhile are lost: the interval poll covers them)."""
        delay = settings.BROKER_RETRY_BASE
        mine = self.instance
        while not self._closed:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await self._call(pubsub.subscribe(settings.NOTIFY_CHANNEL))
                delay = settings.BROKER_RETRY_BASE
                while not self._closed:
                    try:  # a wait on the subscription, not a round trip: not `_call`
                        message = await asyncio.wait_for(
                            pubsub.get_message(
                                ignore_subscribe_messages=True, timeout=settings.BROKER_READ_BLOCK
                            ),
                            settings.BROKER_OP_TIMEOUT + settings.BROKER_READ_BLOCK,
                        )
                    except (RedisError, OSError, TimeoutError) as exc:
                        self._down(exc)
                        raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc
                    if message is None or message.get("type") != "message":
                        continue
                    notice = decode_notice(message["data"], mine)
                    listener = self._notice_listener
                    if notice is not None and listener is not None:
                        try:
                            listener(notice)
                        except Exception:  # one bad notice must not stop the others
                            self.log.exception("broker: applying a notice failed")
            except (BrokerUnavailable, ResponseError):
                await asyncio.sleep(delay * self.rng.uniform(0.5, 1.0))
                delay = min(delay * 2, settings.BROKER_RETRY_MAX)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), settings.BROKER_OP_TIMEOUT)

    # --- the writer -----------------------------------------------------------------------------

    async def lease(self, key: str, listener: Listener) -> Lease:
        k = self.keys.get(key)
        if k is None or k.listener is not listener:
            raise RuntimeError(f"lease for key {key} without a subscription")
        await k.ready.wait()
        lease_ms = int(self.lease_seconds * 1000)
        delay = settings.BROKER_RETRY_BASE
        while True:
            try:
                got = await self._call(self.redis.set(k.lease, self.instance, nx=True, px=lease_ms))
                if not got:  # ours already (a hold that ended on a Redis error)?
                    got = await self._call(
                        self._renew(keys=[k.lease], args=[self.instance, lease_ms])
                    )
                if got:
                    await self._catch_up(k)
                    k.lost.clear()
                    return _RedisLease(self, k)
                wait = self.lease_seconds / 3 * self.rng.uniform(0.8, 1.0)
                delay = settings.BROKER_RETRY_BASE
            except (BrokerUnavailable, ResponseError):
                wait = delay
                delay = min(delay * 2, settings.BROKER_RETRY_MAX)
            await asyncio.sleep(wait)

    async def publish(self, key: str, record: Record) -> None:
        k = self.keys.get(key)
        if k is None:
            raise RuntimeError(f"publish on key {key} without a subscription")
        ttl = int(settings.BROKER_STREAM_TTL * 1000)
        args = [self.instance, k.history, redis_id(record.id), ttl, *encode_record(record)]
        try:
            await self._call(self._publish(keys=[k.lease, k.items], args=args))
        except ResponseError as exc:
            # Not the leader any more, or a later id is already there: someone else writes.
            k.lost.set()
            raise LeaseLost(str(exc)) from exc

    def report(self, key: str, status: Status) -> None:
        k = self.keys.get(key)
        if k is None:
            return
        k.listener.on_status(status)  # this process at once; the others through the stream
        if self._reports >= settings.BROKER_MAX_PENDING_REPORTS or self._closed:
            return
        self._reports += 1
        self._spawn(self._write_status(k, status), f"broker status {key}")

    async def _write_status(self, k: _Key, status: Status) -> None:
        fields = {
            b"ok": b"1" if status.ok else b"0",
            b"detail": status.detail,
            b"code": b"%d" % status.code,
            b"cause": status.cause,
            b"challenge": status.challenge,
            b"by": self.instance,
        }
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(k.status, fields, maxlen=settings.BROKER_STATUS_KEEP, approximate=True)  # type: ignore[arg-type]
        pipe.pexpire(k.status, int(settings.BROKER_STREAM_TTL * 1000))  # like the records
        try:
            with contextlib.suppress(BrokerUnavailable, ResponseError):
                await self._call(pipe.execute())
        finally:
            self._reports -= 1

    async def close(self) -> None:
        self._closed = True
        leaving = [t for t in self._tasks if t.get_name().startswith("broker forget")]
        if leaving:  # channels that just stopped: their interest goes now, not at its expiry
            await asyncio.wait(leaving, timeout=settings.BROKER_OP_TIMEOUT)
        keys = list(self.keys.values())
        self.keys.clear()
        self._streams.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=settings.BROKER_OP_TIMEOUT)
        if keys:
            pipe = self.redis.pipeline(transaction=False)
            for k in keys:
                pipe.zrem(k.interest, self.instance)
            with contextlib.suppress(BrokerUnavailable, ResponseError):
                await self._call(pipe.execute())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.redis.aclose(), settings.BROKER_OP_TIMEOUT)


class _RedisLease:
    """Held while renewals succeed; lost when one is refused, a publish is fenced off, or Redis
    stays silent so long that the lease may have expired (someone else may lead by then)."""

    def __init__(self, broker: RedisBroker, k: _Key) -> None:
        self.broker = broker
        self.k = k

    async def hold(self, work: Callable[[], Awaitable[None]]) -> None:
        broker, k = self.broker, self.k
        lease = broker.lease_seconds
        lease_ms = int(lease * 1000)
        task: asyncio.Task[None] = asyncio.ensure_future(work())
        lost = asyncio.ensure_future(k.lost.wait())
        renewed = time.monotonic()
        released = False
        try:
            while True:
                done, _ = await asyncio.wait({task, lost}, timeout=lease / 3)
                if task in done or lost in done:
                    released = lost in done
                    break
                try:
                    ok = await broker._call(
                        broker._renew(keys=[k.lease], args=[broker.instance, lease_ms]),
                        extra=-settings.BROKER_OP_TIMEOUT + lease / 3,
                    )
                except (BrokerUnavailable, ResponseError):
                    # Stop polling before the lease can have run out: past that, another
                    # process may lead, and two pollers would race.
                    if time.monotonic() - renewed >= lease * 2 / 3:
                        broker.log.warning("stream key %s: lease not renewed; stepping down", k.key)
                        break
                    continue
                if not ok:
                    broker.log.info("stream key %s: lease taken over; stepping down", k.key)
                    released = True
                    break
                renewed = time.monotonic()
        finally:
            lost.cancel()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, settings.BROKER_OP_TIMEOUT)
            if not released:
                with contextlib.suppress(BrokerUnavailable, ResponseError, asyncio.CancelledError):
                    await broker._call(broker._release(keys=[k.lease], args=[broker.instance]))
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def _status(fields: dict[bytes, bytes]) -> Status:
    """A status entry as written by `_write_status` (older entries lack the client fields)."""

    def text(name: bytes) -> str:
        return (fields.get(name) or b"").decode("utf-8", "replace")

    code = fields.get(b"code", b"0")
    return Status(
        fields.get(b"ok") == b"1",
        text(b"detail"),
        int(code) if code.isdigit() else 0,
        text(b"cause"),
        text(b"challenge"),
    )
