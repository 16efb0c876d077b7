"""The validated, immutable form of `routes.yaml` (every key: docs/configuration.md).

`bridge.routing.config.load_config` builds these; everything else only reads them.

Each section of the file is one dataclass here, and its fields are the section's keys: the
dataclass states each key's default and, for a `Literal` field, its allowed values, once, and
the schema (`bridge.routing.schema`) reads them from here (`keys`, `choices`). A field the file
never states (a position, a part of a parsed URL) is marked `DERIVED`; one written under
another name says so with `written_as`. A field whose value must never be shown (a token, a
credential) is marked `SECRET`; a string read from a `${NAME}` reference is an `Expanded`, which
keeps the reference as written. `bridge.routing.printer` shows the first as masked and the
second as its reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, get_args, get_type_hints

from ..errors import ConfigProblem
from ..settings import NOTIFY_HEADER, Limits

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Address = tuple[str, int]  # (host, port); host "" or "0.0.0.0" binds all

_KEY = "routes.yaml"  # field metadata: the key a field is written as; None: not written
_SECRET = "secret"  # field metadata: its value is masked wherever the config is shown
DERIVED: Mapping[str, str | None] = MappingProxyType({_KEY: None})
SECRET: Mapping[str, bool] = MappingProxyType({_SECRET: True})


def written_as(key: str) -> Mapping[str, str | None]:
    """Field metadata for a field whose key in the file is not its own name."""
    return MappingProxyType({_KEY: key})


def keys(section: type[DataclassInstance]) -> tuple[str, ...]:
    """The keys of the file's section that `section` models, in field order."""
    return tuple(key for key, _ in written_fields(section))


def written_fields(
    section: type[DataclassInstance] | DataclassInstance,
) -> tuple[tuple[str, Field[Any]], ...]:
    """(key, field) for each field of `section` that the file writes, in field order."""
    written = ((f.metadata.get(_KEY, f.name), f) for f in fields(section))
    return tuple((key, f) for key, f in written if key is not None)


def is_secret(f: Field[Any]) -> bool:
    """Whether the field is marked `SECRET` (say `field(metadata=SECRET)`, or with another
    marker `metadata=written_as("key") | SECRET`)."""
    return bool(f.metadata.get(_SECRET, False))


class Expanded(str):
    """A string read with its `${NAME}` environment references replaced: it equals the value,
    and `written` is the text as the file has it, what a printed config shows in its place (so
    the value stays out of the output, and the output loads to the same value again)."""

    written: str

    def __new__(cls, value: str, written: str) -> Expanded:
        self = super().__new__(cls, value)
        self.written = written
        return self


def choices(section: type[DataclassInstance], name: str) -> tuple[str, ...]:
    """The values the `Literal` field `name` of `section` allows, in the order it states them."""
    return get_args(get_type_hints(section)[name])


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str = field(metadata=DERIVED)  # its key under `upstreams:`
    url: str  # as written, e.g. "http://127.0.0.1:9000"
    scheme: str = field(metadata=DERIVED)  # "http" (https upstreams are refused for now)
    host: str = field(metadata=DERIVED)
    port: int = field(metadata=DERIVED)
    # "" or a prefix like "/app" (no trailing slash) prepended to every target
    base_path: str = field(metadata=DERIVED)
    timeout: float = 10.0  # connect + response headers, seconds
    host_mode: Literal["client", "upstream"] = field(default="client", metadata=written_as("host"))
    # Added to every poll of this upstream (the service's own credentials), never to authorize
    # checks, `send:` POSTs or proxied requests: (lower-case name, value) pairs, a value read
    # from `${NAME}` an `Expanded`. Pairs, not a dict: the spec is hashed (hub/key.py).
    headers: tuple[tuple[str, str], ...] = field(default=(), metadata=SECRET)

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @property
    def authority(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal (RFC 3986 §3.2.2)
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class LongPoll:
    cursor: str  # dotted JSON path in the response body
    param: str  # query parameter that sends the cursor back
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class Authorize:
    """`stream.authorize`: who may subscribe (docs/configuration.md "Authorization")."""

    check: str | None = None  # GET target on the stream's upstream; None: the poll target
    forward: tuple[str, ...] = ("cookie", "authorization")  # lower-case request header names
    cache: float = 30.0  # seconds a decision is reused for the same stream and credentials
    recheck: float = 300.0  # seconds between checks of a live subscriber


@dataclass(frozen=True, slots=True)
class StreamSpec:
    upstream: Upstream
    poll: str  # path + query template on the upstream, with {params}
    every: float | None
    longpoll: LongPoll | None
    emit: Literal["snapshot", "patch", "merge"] = "snapshot"
    event: str = "message"
    protocols: frozenset[str] = frozenset({"sse", "websocket"})
    vary: tuple[str, ...] = ()  # lower-case request header names
    history: int = 100
    heartbeat: float = 15.0
    send: str | None = None
    ws_format: Literal["envelope", "raw"] = "envelope"
    origins: tuple[str, ...] = ()  # normalised "scheme://host[:port]"
    # Query parameters that never change the answer (a cache-buster such as jQuery's `_`).
    ignore_query: tuple[str, ...] = ()
    authorize: Authorize | None = None  # None: anyone who can reach the route


@dataclass(frozen=True, slots=True)
class Route:
    index: int = field(metadata=DERIVED)  # position in the file, 0-based
    path: str  # the template as written, e.g. "/prices/{symbol}"
    line: int = field(metadata=DERIVED)  # where the route starts (1-based), for messages
    upstream: Upstream | None  # plain proxy target (None for a pure stream route)
    stream: StreamSpec | None = None
    push: tuple[str, ...] = ()  # declared assets
    push_auto: bool = field(default=False, metadata=DERIVED)  # `push: auto`
    params: tuple[str, ...] = field(default=(), metadata=DERIVED)  # names in template order
    # The query parameters the path's query template reads (`?symbol={s}` → ("symbol",)).
    query: tuple[str, ...] = field(default=(), metadata=DERIVED)

    @property
    def kind(self) -> str:
        return "stream" if self.stream else "proxy"


@dataclass(frozen=True, slots=True)
class Listen:
    https: Address | None = None
    http3: Address | None = None
    http: Address | None = None
    http_mode: Literal["redirect", "serve"] = "redirect"
    admin: Address | None = None
    admin_public: bool = False  # an admin listener off loopback, allowed explicitly


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True, slots=True)
class AccessLogConfig:
    path: str = "-"  # "-" for stdout, else an absolute path
    format: Literal["combined", "json"] = "combined"


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """`broker: redis://host:port/db[?lease=2s]`: stream records, leadership and interest shared
    through Redis, so a cluster polls each stream once. (`memory`, the default, is None.)"""

    url: str  # as written, without the query: handed to the Redis client
    host: str
    port: int
    db: int
    lease: float  # seconds a leader's lease lasts without renewal

    @property
    def shown(self) -> str:
        """The URL without any password, for logs."""
        return f"redis://{self.host}:{self.port}/{self.db}"


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """`notify:`: the app tells bridge a stream changed, by `POST /notify` on the admin listener
    (with `Authorization: Bearer <token>`) or by a `header` on a proxied answer."""

    token: str = field(metadata=SECRET)  # required; usually a `${NAME}` reference
    header: str = NOTIFY_HEADER  # as written; matched case-insensitively


@dataclass(frozen=True, slots=True)
class Engines:
    """`engines:` the protocol implementation behind each HTTP version. nghttp2 falls back to
    h2 where the pinned ngh2 is not installed (`bridge.protocol.http2.engine_in_use`); HTTP/3
    is aioquic's alone in this version (`qh3` is not accepted yet)."""

    http2: Literal["nghttp2", "h2"] = "nghttp2"
    http3: Literal["aioquic"] = "aioquic"


@dataclass(frozen=True, slots=True)
class Config:
    source: Path = field(metadata=DERIVED)  # the file as given on the command line
    listen: Listen
    tls: TlsConfig
    access_log: AccessLogConfig
    limits: Limits
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    broker: BrokerConfig | None = None  # None: the in-process broker
    notify: NotifyConfig | None = None  # None: no notify input (the header is still stripped)
    engines: Engines = field(default_factory=Engines)
    # Accepted, but probably not what was meant.
    warnings: tuple[ConfigProblem, ...] = field(default=(), metadata=DERIVED)
