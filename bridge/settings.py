"""Every limit and timeout bridge uses, with units, in one place.

Values a user may change live in `routes.yaml` (`limits:`) and arrive here through
`Limits`; the rest are fixed engineering choices documented next to their value.
Sizes are bytes, durations are seconds (floats).
"""

from __future__ import annotations

from dataclasses import dataclass

KB = 1024
MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """The user-tunable limits of `routes.yaml` `limits:`; defaults match docs/configuration.md."""

    max_connections: int = 20000
    max_subscribers: int = 20000
    max_subscribers_per_stream: int = 20000
    header_timeout: float = 10.0
    tls_handshake_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    max_request_body: int = 10 * MB
    max_ws_message: int = 1 * MB
    max_snapshot: int = 1 * MB
    subscriber_buffer: int = 256 * KB
    h2_max_concurrent_streams: int = 128
    # Live channels (upstream pollers) of one route: every distinct path parameter or `vary`
    # value is one, so without a cap each unauthenticated request could start a poller.
    max_channels_per_route: int = 1000
    # SIGTERM: in-flight requests get this long to finish before their connections are cut.
    shutdown_grace: float = 10.0


# --- request heads -------------------------------------------------------------------------
# nginx's large_client_header_buffers default is 4 x 8 KB; 64 KiB total is generous but bounded.
MAX_HEADER_BYTES = 64 * KB
MAX_HEADER_COUNT = 100
MAX_TARGET_BYTES = 8 * KB

# --- buffers and flow control ----------------------------------------------------------------
# Above the high watermark a writer pauses; it resumes below the low one (uvicorn's shape).
WRITE_HIGH_WATER = 256 * KB
WRITE_LOW_WATER = 64 * KB
# Inbound bodies pause reading above this many unconsumed bytes (docs/architecture.md).
READ_HIGH_WATER = 64 * KB
# HTTP/1.1 pipelined request bytes held while the current request is answered; past this the
# connection closes after the current response (RFC 9112 §9.3.2: clients retry the rest).
MAX_PIPELINED_BYTES = 256 * KB
# One socket read takes at most this many bytes.
READ_CHUNK = 64 * KB
# A proxied body is moved in pieces of at most this size.
BODY_CHUNK = 64 * KB
H2_INITIAL_WINDOW = 1 * MB
H2_MAX_FRAME_SIZE = 16 * KB
# HTTP/3: a stream's receive window beyond what bridge has consumed (inbound backpressure; see
# protocol/quic.py), streams a client may open at once, and the connection's receive window.
H3_STREAM_WINDOW = 256 * KB
H3_MAX_STREAMS = 128
# QUIC listener: above this many connections still in their handshake, new clients must
# prove their address with a Retry first (RFC 9000 §8.1.2), and datagrams to send queue up to
# this many bytes in the socket's buffer before more are dropped (QUIC retransmits them).
QUIC_RETRY_ABOVE = 64
QUIC_SEND_QUEUE = 1 * MB
# Client connection ids answered with a Retry are remembered (at most this many, this long) so
# a resent first Initial is retried again rather than started as a handshake nobody finishes.
QUIC_RETRY_MEMORY = 4096
QUIC_RETRY_MEMORY_SECONDS = 10.0
# The UDP socket's kernel buffers: one socket carries every QUIC connection, and a burst of
# handshakes (1200-byte Initials) overflows Linux's default ~208 KB receive buffer at once.
QUIC_SOCKET_BUFFER = 4 * MB
# Rapid reset (CVE-2023-44487): more resets than this within the window is abuse.
H2_MAX_RESETS = 200
H2_RESET_WINDOW = 10.0
# PING and SETTINGS floods (CVE-2019-9512 / -9515; PRIORITY and empty DATA frames are counted
# too, -9513 / -9518): each frame costs ~15 µs of h2's time and PING/SETTINGS queue an ACK.
# A client keeping a connection alive pings every few seconds, sends SETTINGS a handful of
# times and PRIORITY a few per request; more than this many within the window gets GOAWAY
# ENHANCE_YOUR_CALM before h2 sees the frames, so one connection's work per window is bounded (nginx and Envoy
# close on floods the same way). Besides this, an HTTP/2 connection stops reading while its
# write buffer is above WRITE_HIGH_WATER, so the ACKs of a client that never reads stay bounded.
H2_MAX_CONTROL_FRAMES = 1000
H2_CONTROL_WINDOW = 10.0

# --- the garbage collector ----------------------------------------------------------------
# gc.set_threshold for `bridge serve` (CPython's default is 700, 10, 10); see server/run.py.
GC_THRESHOLDS = (50_000, 20, 20)

# --- timeouts (seconds) ------------------------------------------------------------------------
UPSTREAM_CONNECT_TIMEOUT = 5.0
UPSTREAM_IDLE_TIMEOUT = 60.0  # between body chunks of a proxied response
UPSTREAM_POOL_IDLE = 30.0  # an idle pooled upstream connection is closed after this
# Idle connections kept per origin. Below the number of requests in flight, every burst
# closes the surplus and the next one reconnects: measured at 50 concurrent clients, 32 made
# connection set-up a visible share of the proxy's CPU.
UPSTREAM_POOL_MAX_IDLE = 256
SEND_TIMEOUT = 60.0  # a client that accepts no bytes for this long is dropped
# Lingering close of an HTTP/1.1 connection answered before its request body was read (see
# ServerConnection._close_transport); nginx's lingering_timeout / lingering_time are 5s / 30s.
LINGER_TIMEOUT = 2.0  # closed after this long without a byte from the peer
LINGER_MAX = 10.0  # and after this long in all
CLOSE_TIMEOUT = 5.0  # WebSocket close handshake

# --- WebSocket frames from clients -------------------------------------------------------------
# A fragment bomb (thousands of empty or 1-byte continuation frames) costs wsproto's time per
# frame while the message stays under max_ws_message: past this many frames one message is
# closed 1009. A 1 MB message in 1 KiB fragments is 1024 frames.
WS_MAX_FRAGMENTS = 1024
# Frames of any kind (pings included) per window from one client; beyond it the connection is
# closed 1008 at once, without waiting for the close handshake (RFC 6455 §7.1.7).
WS_MAX_FRAMES = 4096
WS_FRAME_WINDOW = 1.0

# --- streams -----------------------------------------------------------------------------------
STREAM_LINGER = 5.0  # a channel keeps polling this long after its last subscriber leaves
# ... but one that only plain GETs have asked for (no subscriber ever came) stops this soon
# after the last GET: long enough for a page's GET-then-subscribe, too short to be a way of
# making bridge poll the upstream for an attacker.
GET_LINGER = 1.0
BACKOFF_BASE = 1.0
BACKOFF_MAX = 30.0
RETRY_AFTER_MAX = 600.0
SSE_RETRY_MS = 2000  # `retry:` hint, jittered per subscriber
LAG_CLOSE_AFTER = 30.0  # a lagging subscriber still stuck after this is closed
LONGPOLL_MARGIN = 5.0  # a long-poll request's timeout beyond the upstream's own hold time
# An unchanged long-poll answer sooner than this means the upstream did not hold the request:
# wait out the rest rather than spin against it.
LONGPOLL_MIN_GAP = 1.0
MAX_PREFER_WAIT = 120.0  # cap for `Prefer: wait=N` long-polls
MAX_PUSH_AUTO = 16  # assets learned by `push: auto`
ASSET_CACHE_BYTES = 32 * MB

# --- the Redis broker (routes.yaml `broker:`, bridge/broker/redis.py) -------------------------
BROKER_LEASE = 5.0  # a stream leader's lease (`?lease=` overrides); renewed every third of it
BROKER_OP_TIMEOUT = 2.0  # every Redis command, beyond any time it is asked to block
BROKER_READ_BLOCK = 0.25  # XREAD BLOCK: how soon a newly joined key is in the shared read
BROKER_READ_COUNT = 1000  # entries per key per XREAD at most
BROKER_HISTORY_WAIT = 2.0  # a new subscriber waits this long for the stored history at most
BROKER_RETRY_BASE = 0.1  # reconnect backoff after a Redis failure, doubling up to the max
BROKER_RETRY_MAX = 5.0
BROKER_STREAM_TTL = 24 * 3600.0  # a key's records expire this long after its last change
BROKER_STATUS_KEEP = 16  # poll outcomes kept per key (followers read only new ones)
BROKER_MAX_CONNECTIONS = 16  # to Redis, per process (one of them blocks in XREAD)
BROKER_ERROR_LOG_INTERVAL = 30.0  # at most one "Redis unreachable" line per interval

# --- workers (`bridge serve --workers N`) ------------------------------------------------------
WORKER_RESTART_MIN = 0.5  # pause before restarting a worker that died
WORKER_RESTART_MAX = 10.0  # ... doubling while it keeps dying within WORKER_STABLE seconds
WORKER_STABLE = 10.0
WORKER_POLL = 0.1  # the supervisor looks at its workers this often
# After SIGTERM a worker gets `limits.shutdown_grace` plus this margin to exit, then is killed.
WORKER_KILL_MARGIN = 5.0

# --- the upstream client (bridge/upstream/, bridge/handlers/wsproxy.py) ------------------------
# Above this, a request body is handed to the transport as its own buffer instead of being
# joined with the head (a copy); below it, one buffer means one send.
UPSTREAM_JOIN_LIMIT = 16 * KB
# An upstream may send a few 1xx heads before the final one (100, 103); more is a flood.
UPSTREAM_MAX_INFORMATIONAL = 16
# Header fields of one upstream answer: an upstream is trusted more than a client.
UPSTREAM_MAX_HEADER_COUNT = 4 * MAX_HEADER_COUNT
# The idle pool's sweep fires this share of `UPSTREAM_POOL_IDLE` late, so that one timer
# usually expires a whole batch of connections.
UPSTREAM_POOL_SWEEP_SLACK = 0.05
# Distinct (client, scheme, host) Forwarded elements kept formatted; the cache starts over
# when full.
FORWARDED_CACHE_SIZE = 4096
# A pass-through WebSocket whose client sends nothing (not even a ping) for this long ends.
WS_PROXY_IDLE_TIMEOUT = UPSTREAM_IDLE_TIMEOUT * 10

# --- hub and broker (bridge/hub/, bridge/broker/) ----------------------------------------------
# A channel's heartbeat goes after heartbeat * [1 - jitter, 1] of silence: thousands of
# channels drift apart instead of beating together.
HEARTBEAT_JITTER = 0.15
LAG_CHECK = LAG_CLOSE_AFTER / 4  # a channel's tick looks at its laggers at least this often
# A subscriber's `retry:` hint is SSE_RETRY_MS times a factor drawn from this range, so the
# clients of a closed crowd come back apart.
SSE_RETRY_JITTER = (0.75, 1.5)
POLL_JITTER = 0.1  # `every` polls go at every * [1 - jitter, 1 + jitter]
POLL_ERROR_LOG_INTERVAL = 60.0  # at most one poll-failure line per stream per interval
# No retry of a failing upstream sooner than this: a zero would be a busy loop against it.
BACKOFF_MIN = BACKOFF_BASE / 10
# A subscriber refused past a limit gets a Retry-After drawn from this range (seconds).
OVERLOADED_RETRY_AFTER = (3, 8)
# On shutdown the hub waits this long for its channels' tasks to end (not CLOSE_TIMEOUT, the
# WebSocket close handshake).
HUB_CLOSE_WAIT = 5.0
BROKER_MAX_PENDING_REPORTS = 64  # Redis status writes in flight; more are dropped (best effort)

# --- handlers: pages, assets, WebSocket, plain GETs ------------------------------------------
PUSH_COOKIE_TAGS = 32  # pushed-asset versions remembered in the bounded cookie (8 hex chars each)
PUSH_VERSION_WAIT = 1.0  # the page head waits this long for its pushed assets' versions
PUSH_MAX_ASSET_BYTES = 4 * MB  # larger assets are not worth pushing; passed through instead
ASSET_MAX_VARY_RECORDS = 4096  # (asset, Vary'd request values) variants the asset cache keeps
WS_SEND_IN_FLIGHT = 8  # `send:` POSTs queued per WebSocket before it stops reading
# How long a full `send:` queue may hold up reading before the client is closed with 1008:
# every queued POST is bounded by the upstream timeout, so this is generous.
WS_SEND_QUEUE_TIMEOUT = 30.0
# The hub pings an idle channel every `heartbeat`; past this many heartbeats (a random factor
# in the range, so thousands of peers are not pinged at once) of silence from a WebSocket peer
# bridge pings it itself, and one more such silence ends it.
WS_PEER_SILENCE = (1.5, 2.0)

# --- commands and logs --------------------------------------------------------------------------
RELOAD_VERDICT_WAIT = 20.0  # `bridge reload` waits this long for the running process's verdict
ACCESS_LOG_BATCH = 256  # queued access-log lines written at once (else at the iteration's end)

# --- notify (bridge/hub/notify.py, bridge/ops/notify.py, bridge/broker/) -----------------------
# Notify-triggered polls of one stream go at most this often (the first at once): a flood of
# notifies costs the upstream at most 1 / NOTIFY_MIN_GAP polls a second per stream.
NOTIFY_MIN_GAP = 0.1
NOTIFY_MAX_BODY = 1 * MB  # a POST /notify body (its `data` included); 413 beyond
NOTIFY_MAX_PATHS = 32  # paths one Bridge-Notify header may name; the rest are ignored
# Notices being sent to or applied from other processes at once (Redis); more are dropped:
# the interval poll stays the safety net.
NOTIFY_MAX_PENDING = 256
NOTIFY_DATA_WAIT = 5.0  # a `data` publish waits this long for this process's poller, at most
NOTIFY_CHANNEL = "bridge:notify"  # the Redis pub/sub channel every process listens on
NOTIFY_HEADER = "Bridge-Notify"  # the default response header (notify.header)

# --- authorization (bridge/hub/authorize.py) ---------------------------------------------------
# Decisions kept (per check request and credentials); the least recently used go first.
AUTHORIZE_CACHE_SIZE = 20_000
AUTHORIZE_TICK = 0.25  # how often due rechecks are looked for (seconds)
# A recheck goes after recheck * [1 - jitter, 1]: audiences admitted together drift apart.
AUTHORIZE_RECHECK_JITTER = 0.2
AUTHORIZE_RECHECK_CONCURRENCY = 32  # rechecks in flight to the app at once, per process
# A recheck that could not be made (the app unreachable) is tried again this soon (at most
# `recheck`): live subscribers are kept meanwhile.
AUTHORIZE_RETRY_FAILED = 10.0
# After a reload that changed an `authorize` block, its live subscribers are checked again
# within this many seconds (spread, not all at once).
AUTHORIZE_RELOAD_SPREAD = 1.0
# A new `vary` value's first poll answers 401/403/404: the answer goes to the requester and no
# channel is made. First polls in flight at once for new values, per route.
VARY_MAX_FIRST_POLLS = 64

# --- edges: long-poll holds, first-poll outcomes (issue 19) ------------------------------------
# A plain GET waits for a stream's first state as long as the first poll itself may take, plus
# this: the poll's own verdict (and its cause) then reaches the client before the wait ends.
FIRST_POLL_MARGIN = 1.0
# A new SSE or WebSocket subscriber of a stream with no state yet waits at most this long for
# the first poll's outcome before its 200/101 (a 4xx from the upstream refuses it instead).
SUBSCRIBER_FIRST_WAIT = 5.0

# --- HTTP/3 hardening (issue 20) ---------------------------------------------------------------
# QPACK (RFC 9204): the dynamic table a client may fill on each connection, and how many of its
# request streams may wait for table inserts at once. A header block is refused unexpanded
# (431) when what it would decode to passes MAX_HEADER_BYTES (protocol/qpackguard.py), which
# bridge also advertises as SETTINGS_MAX_FIELD_SECTION_SIZE; so the capacity bounds memory per
# connection, not the cost of a block. Measured (a browser's 18-field EventSource request,
# 50 on one connection, pylsqpack's encoder): 397 B per request on the wire with no table,
# 317 with 1 KiB, 287 with 4 KiB and 287 with 16 KiB; decoding plus the estimate 22, 19, 18
# and 19 µs. 4 KiB takes all of the gain; more only costs memory.
H3_QPACK_TABLE_CAPACITY = 4 * KB
H3_QPACK_BLOCKED_STREAMS = 16
# QUIC connections in their handshake at once, address validated (Retry) or not: each holds
# ~76 KiB (TLS and QUIC state) until it completes or `tls_handshake_timeout` ends it. Past
# this, new Initials are dropped unanswered and their clients resend them (RFC 9000 §14).
QUIC_MAX_HANDSHAKES = 512
# Frames that carry nothing (RFC 9114 §10.5): on the control stream every frame after SETTINGS
# (a client sends a handful: MAX_PUSH_ID, GOAWAY), unknown/grease frames and empty DATA
# frames on request streams, and QUIC PING frames counted on their own. aioquic processes
# each without limit (1.4-2.1 M of them on one control stream took a core); past this many
# per window the connection is closed with H3_EXCESSIVE_LOAD, as HTTP/2's control-frame cap.
H3_MAX_IGNORED_FRAMES = H2_MAX_CONTROL_FRAMES
H3_MAX_PINGS = H2_MAX_CONTROL_FRAMES
H3_FRAME_WINDOW = H2_CONTROL_WINDOW

# --- HTTP/2 engines (bridge/protocol/h2engine.py, ngh2shim.py, h2shim.py) ----------------------
# CONTINUATION frames after one HEADERS before the connection is an abuse (RFC 9113 §10.5):
# counted on the frame headers, ahead of either engine, and libnghttp2 is set to the same bound.
# 16 frames of our 16 KB MAX_FRAME_SIZE hold any header block MAX_HEADER_BYTES allows.
H2_MAX_CONTINUATIONS = 16
# Streams that bridge (or libnghttp2) reset while their client was still sending on them: the
# nghttp2 engine remembers this many of the newest, and ignores what their clients still send
# (RFC 9113 §5.1). A frame on an older one is a connection error, as on any other stream
# that has closed (§5.1 "MAY choose to limit the period").
H2_RESET_STREAMS_KEPT = 1024
# A clear-text connection's first bytes held to tell an HTTP/2 client's broken preface from an
# HTTP/1.1 request line (bridge/server/connection.py `http2_preface_shape`); past it, HTTP/1.1.
H2C_SNIFF_MAX = 1024

# --- WebSocket pongs (bridge/handlers/websocket.py) ----------------------------------------------
# Pings answered one pong each per WS_FRAME_WINDOW (Autobahn 2.10/2.11 expect every ping of a
# burst answered); past this a read's pings get one pong, to the latest (RFC 6455 §5.5.3).
WS_PONGS_PER_WINDOW = 64
