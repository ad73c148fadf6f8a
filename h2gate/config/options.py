"""The one options table: every knob h2gate has, in one dataclass.

Each field's metadata (see :func:`option`) drives the click option, the
``H2GATE_*`` environment variable, the TOML key in ``--config`` files and the
generated reference; :mod:`h2gate.config.sources` reads values into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ENV_PREFIX = "H2GATE_"


def option(
    default: Any,
    help: str,
    *,
    flags: tuple[str, ...] = (),
    metavar: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    cli: bool = True,
    flag_value: str | None = None,
) -> Any:
    """Declare one option; ``flags`` overrides the derived ``--name`` (e.g. short forms).

    ``flag_value``: the value of a choice flag given bare (``--enable-frame-api`` alone means ``on``).
    """
    meta = {"help": help, "flags": flags, "metavar": metavar, "min": minimum, "max": maximum, "cli": cli}
    meta["flag_value"] = flag_value
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]
Lifespan = Literal["auto", "on", "off"]
AppLoop = Literal["asyncio", "trio"]
VerifyClient = Literal["none", "optional", "required"]
TLSVersion = Literal["1.2", "1.3"]
Interface = Literal["auto", "asgi", "wsgi"]
LogFormat = Literal["text", "json"]
FrameAPI = Literal["off", "on", "unsafe-any-bind"]


@dataclass
class Config:
    """The resolved configuration of one server run."""

    app: str | None = option(None, "The application, as MODULE:ATTRIBUTE (e.g. myapp:app).", cli=False)
    factory: bool = option(False, "Treat APP as a callable that returns the application.")
    app_dir: str = option(".", "Directory put first on sys.path before importing APP.")
    bind: list[str] = option(
        ["127.0.0.1:8000"],
        "Address to listen on: HOST:PORT, [::1]:PORT, unix:PATH or fd://N. Repeatable.",
        flags=("-b", "--bind"),
        metavar="ADDRESS",
    )
    certfile: str | None = option(None, "TLS certificate chain file (PEM). Enables TLS with ALPN h2.", metavar="FILE")
    keyfile: str | None = option(
        None, "TLS private key file (PEM); defaults to the key inside --certfile.", metavar="FILE"
    )
    keyfile_password: str | None = option(None, "Password for an encrypted --keyfile.", metavar="PASSWORD")
    self_signed: bool = option(
        False, "Serve TLS with a throwaway in-memory certificate for localhost (development only)."
    )
    cert: list[str] = option(
        [],
        "Extra certificate for one TLS server name (SNI), as HOSTNAME=CERTFILE:KEYFILE; HOSTNAME may be "
        "*.example.com (one label). Other names get --certfile. Repeatable; reloaded on SIGHUP.",
        metavar="HOST=CERT:KEY",
    )
    ca_certs: str | None = option(
        None, "CA certificates (PEM) that client certificates are verified against (mTLS).", metavar="FILE"
    )
    verify_client: VerifyClient = option(
        "none",
        "Client certificates (mTLS, needs --ca-certs): none, optional (verified if sent) or required. "
        "A failed verification ends the handshake.",
    )
    ocsp_response: str | None = option(
        None,
        "DER OCSP response to staple for --certfile (refreshed on SIGHUP); stale or mismatched ones are not stapled.",
        metavar="FILE",
    )
    ssl_min_version: TLSVersion = option("1.2", "Lowest TLS version accepted: 1.2 or 1.3.")
    ciphers: str | None = option(
        None,
        "TLS 1.2 cipher list (OpenSSL syntax); only ECDHE+AEAD suites are allowed (RFC 9113 §9.2.2). "
        "Default: ECDHE with AES-GCM and ChaCha20-Poly1305.",
        metavar="LIST",
    )
    root_path: str = option("", "ASGI root_path / WSGI SCRIPT_NAME, for an app mounted below a URL prefix.")
    log_level: LogLevel = option("info", "Logging level.")
    access_log: bool = option(True, "Log one line per request (stream); see --access-log-format.")
    # -- logs, metrics, proxies (h2gate/observe/accesslog.py, metrics.py, proxy.py, proxy_protocol.py) --
    access_log_format: str = option(
        '%(peer)s - "%(r)s" %(status)s %(B)s %(L)ss stream=%(stream)s',
        "Access log line, with Gunicorn-style atoms such as %(h)s %(r)s %(s)s %(B)s %(D)s %({name}i)s "
        "%({name}o)s and our own %(stream)s %(alpn)s %(tls)s (README: Logging).",
        metavar="FORMAT",
    )
    log_format: LogFormat = option("text", "Log line format: text, or json (one JSON object per line).")
    access_logfile: str | None = option(
        None, "Where access lines go: - for stdout, or a file (appended). Default: with the error log.", metavar="FILE"
    )
    error_logfile: str = option("-", "Where the error log goes: - for stderr, or a file (appended).", metavar="FILE")
    log_config: str | None = option(
        None, "A logging.dictConfig file (.json or .toml) that replaces h2gate's own log setup.", metavar="FILE"
    )
    metrics_bind: str | None = option(
        None,
        "Serve Prometheus metrics over HTTP/1.1 at HOST:PORT (path /metrics), apart from the app's binds. "
        "Needs h2gate[metrics].",
        metavar="HOST:PORT",
    )
    proxy_headers: bool = option(
        False, "Take client address, scheme and host from Forwarded / X-Forwarded-* sent by trusted peers."
    )
    forwarded_allow_ips: list[str] = option(
        ["127.0.0.1", "::1"],
        "Peers whose proxy headers are trusted: addresses or CIDR networks, comma-separated; * trusts all.",
        metavar="IPS",
    )
    proxy_protocol: bool = option(
        False,
        "Every connection on every bind starts with a PROXY protocol v1 or v2 header (HAProxy, AWS NLB); "
        "connections without a valid one are closed.",
    )
    server_header: bool = option(True, "Add a 'server: h2gate' header to responses.")
    graceful_timeout: float = option(
        30.0, "Seconds in-flight streams get to finish after SIGTERM/SIGINT before they are cancelled.", minimum=0
    )
    loop: AppLoop = option(
        "asyncio",
        "Event loop the ASGI app runs in: asyncio (what most apps, Django included, need) "
        "or trio (for trio/anyio apps: no asyncio bridge, fastest).",
    )
    lifespan: Lifespan = option("auto", "ASGI lifespan protocol: auto (use it if the app supports it), on, off.")
    interface: Interface = option(
        "auto",
        "Application interface: auto (tell ASGI from WSGI by the app's call signature, without calling it), "
        "asgi or wsgi.",
    )
    threads: int = option(
        10,
        "WSGI worker threads: app calls running at once (more streams wait for a free thread). "
        "Fixed rather than per CPU: WSGI apps mostly wait on I/O, and the GIL runs one at a time anyway.",
        minimum=1,
        maximum=1024,
    )
    max_concurrent_streams: int = option(
        100, "SETTINGS_MAX_CONCURRENT_STREAMS: open streams allowed per connection.", minimum=1, maximum=2**31 - 1
    )
    initial_window_size: int = option(
        262_144,
        "SETTINGS_INITIAL_WINDOW_SIZE: request-body bytes a client may send per stream before the app reads them.",
        minimum=1,
        maximum=2**31 - 1,
    )
    connection_window_size: int = option(
        1_048_576,
        "Connection-level receive window: request-body bytes buffered per connection across all streams.",
        minimum=65_535,
        maximum=2**31 - 1,
    )
    max_header_list_size: int = option(
        65_536, "SETTINGS_MAX_HEADER_LIST_SIZE: largest request header block accepted, in bytes.", minimum=1024
    )
    max_frame_size: int = option(
        16_384, "SETTINGS_MAX_FRAME_SIZE: largest frame payload accepted.", minimum=16_384, maximum=16_777_215
    )
    keep_alive_timeout: float = option(
        60.0, "Close a connection (GOAWAY NO_ERROR) after this many idle seconds with no open streams.", minimum=0
    )
    handshake_timeout: float = option(
        10.0, "Seconds a client gets to finish the TLS handshake and send the HTTP/2 preface.", minimum=0.1
    )
    http1_answer: bool = option(
        True,
        "Answer plain HTTP/1.1 requests with '505 HTTP Version Not Supported' and a hint; off: just close.",
    )
    ws_http1: bool = option(
        True,
        "Serve HTTP/1.1 WebSocket upgrades (RFC 6455; GET + Upgrade: websocket) to ASGI apps, cleartext and "
        "over TLS with ALPN http/1.1. Browsers open a WebSocket over HTTP/2 (RFC 8441) only on an HTTP/2 "
        "connection they already have; with none (a page served from another origin) they open a new "
        "connection offering only http/1.1. Other HTTP/1.1 requests still get the 505.",
    )
    ws_max_message_size: int = option(
        16 * 1024 * 1024,
        "Largest WebSocket message accepted, in bytes (after decompression); a bigger one closes the "
        "connection with code 1009.",
        minimum=1,
    )
    frame_api: FrameAPI = option(
        "off",
        "ASGI extension h2gate.frames for testing HTTP/2 clients: an event for each frame, and raw frame writes "
        "that can break the protocol on purpose. on (the bare flag; loopback binds only) or unsafe-any-bind.",
        flags=("--enable-frame-api",),
        flag_value="on",
    )
    max_resets_per_second: int = option(
        200,
        "Client RST_STREAMs tolerated per second per connection before GOAWAY ENHANCE_YOUR_CALM (rapid reset).",
        minimum=1,
    )
    # -- attack resistance (README "Limits and attack resistance") --
    max_control_frames: int = option(
        1000,
        "PING and SETTINGS frames answered while our replies wait to be written (the client does not read) "
        "before GOAWAY ENHANCE_YOUR_CALM (PING/SETTINGS flood).",
        minimum=16,
        maximum=1_000_000,
    )
    max_empty_frames_per_second: int = option(
        100,
        "Empty DATA frames without END_STREAM and empty HEADERS/CONTINUATION fragments tolerated per second per "
        "connection before GOAWAY ENHANCE_YOUR_CALM (empty-frame flood).",
        minimum=1,
    )
    max_priority_frames_per_second: int = option(
        1000,
        "PRIORITY and PRIORITY_UPDATE frames tolerated per second per connection before GOAWAY ENHANCE_YOUR_CALM "
        "(priority flood). Browsers send a handful per page.",
        minimum=10,
    )
    max_window_updates_per_second: int = option(
        1000,
        "WINDOW_UPDATE frames tolerated per second per connection, on top of two for every DATA frame we sent "
        "in that second, before GOAWAY ENHANCE_YOUR_CALM (window-update flood).",
        minimum=10,
    )
    header_timeout: float = option(
        10.0,
        "Seconds a client gets to finish a header block (HEADERS to the last CONTINUATION) before GOAWAY "
        "ENHANCE_YOUR_CALM (slowloris, CONTINUATION flood).",
        minimum=0.1,
    )
    body_timeout: float = option(
        60.0,
        "Seconds a request body may go without DATA (while nothing of it waits for the app) before the stream is "
        "reset with RST_STREAM CANCEL; WebSockets are exempt; 0 disables.",
        minimum=0,
    )
    send_timeout: float = option(
        60.0,
        "Seconds a response may wait for the client: for flow-control window (then RST_STREAM CANCEL) or for the "
        "socket to take our bytes (then the connection is closed); 0 disables.",
        minimum=0,
    )
    max_connections: int = option(
        1000,
        "Connections this process serves at once; more are closed right after accept (logged once a second).",
        minimum=1,
    )
    max_body_size: int = option(
        0,
        "Largest request body in bytes: a larger content-length gets 413 before the app runs, a body that grows "
        "past it is reset with RST_STREAM CANCEL. 0: no limit (bodies are streamed under flow control anyway).",
        minimum=0,
    )
    backlog: int = option(1024, "Listen backlog of each bound socket.", minimum=1)
    # Process model (h2gate/ops/supervisor.py, reloader.py, systemd.py).
    workers: int = option(
        1,
        "Worker processes. 1 runs a single process; more starts a supervisor that shares the listening sockets "
        "with the workers, restarts dead ones and reloads without downtime on SIGHUP.",
        flags=("-w", "--workers"),
        minimum=1,
        maximum=512,
    )
    supervise: bool = option(
        False,
        "Run the supervisor even with one worker, so SIGHUP is a full reload without downtime (a new process "
        "imports the app and reads the config again) instead of a certificate reload in place.",
    )
    max_requests: int = option(
        0,
        "Replace a worker after it served this many requests (new worker first, then the old drains); 0: never.",
        minimum=0,
    )
    max_requests_jitter: int = option(
        0, "Add a random 0..N to the request limit of each worker, so workers are not all replaced at once.", minimum=0
    )
    reload: bool = option(
        False, "Development: restart the worker when a watched file changes (needs the watchfiles package)."
    )
    reload_dir: list[str] = option(
        [], "Directory watched by the reloader (default: the app directory). Repeatable.", metavar="DIR"
    )
    reload_include: list[str] = option(
        ["*.py"], "File name patterns that trigger a reload. Repeatable.", metavar="PATTERN"
    )
    reload_exclude: list[str] = option(
        [".*", "*~", "__pycache__"],
        "File or directory name patterns the reloader ignores. Repeatable.",
        metavar="PATTERN",
    )
    pid: str | None = option(None, "Write the PID of the main process here; removed on exit.", metavar="FILE")
    config: str | None = option(None, "TOML file of options (keys as in this table).", metavar="FILE", cli=True)

    @property
    def use_tls(self) -> bool:
        return bool(self.certfile or self.self_signed)
