"""The one options table: every knob h2gate has, in one dataclass.

Each field's metadata (see :func:`option`) drives the click option, the
``H2GATE_*`` environment variable, the TOML key in ``--config`` files and the
generated reference; :mod:`h2gate.config.sources` reads values into it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ENV_PREFIX = "H2GATE_"


#: The sections of ``--help`` and of the options reference, in order.
SECTIONS = (
    "App",
    "Binding",
    "TLS",
    "HTTP/2",
    "Limits and timeouts",
    "Workers and reload",
    "Logging and metrics",
    "Proxies",
    "WebSockets",
    "Development",
)

#: The other servers whose spellings the options table records (``peers=``), as they are named in the docs.
PEER_SERVERS = {
    "uvicorn": "Uvicorn",
    "gunicorn": "Gunicorn",
    "hypercorn": "Hypercorn",
    "granian": "Granian",
    "h2corn": "h2corn",
}

#: Other servers' flags with no h2gate option: what the command line answers when one is given.
NO_EQUIVALENT = {
    "--timeout": "Gunicorn's worker timeout: h2gate has none (workers are not killed for being busy); "
    "see --graceful-timeout and --send-timeout",
    "-k": "Gunicorn's/Hypercorn's worker class: h2gate has one; for trio apps use --loop trio",
    "--worker-class": "Gunicorn's/Hypercorn's worker class: h2gate has one; for trio apps use --loop trio",
    "-p": "-p is --pid in Gunicorn and Hypercorn but --port in h2corn: write --pid FILE or --port N",
    "--daemon": "h2gate does not daemonize: run it under systemd (conf/systemd/) or a container",
    "-D": "h2gate does not daemonize: run it under systemd (conf/systemd/) or a container",
    "--env-file": "h2gate reads no env file: export the variables, or use a config file (--config)",
    "--http": "h2gate speaks HTTP/2 only (with HTTP/1.1 WebSocket upgrades, --ws-http1)",
    "--http2": "h2gate always speaks HTTP/2",
    "--ws": "WebSockets are always on for ASGI apps (--ws-http1 for HTTP/1.1 upgrades)",
    "--insecure-bind": "all binds share one TLS setting: run a second h2gate for cleartext",
    "--preload": "workers import the app themselves (so a reload loads new code): there is no preload",
}


def option(
    default: Any,
    help: str,
    *,
    section: str | None = None,
    peers: Mapping[str, str] | None = None,
    flags: tuple[str, ...] = (),
    metavar: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    cli: bool = True,
    flag_value: str | None = None,
) -> Any:
    """Declare one option; ``flags`` overrides the derived ``--name`` (e.g. short forms).

    ``section``: its heading in ``--help`` and the reference (one of :data:`SECTIONS`).
    ``peers``: how other servers spell it, ``{"uvicorn": "--ssl-certfile", ...}`` (several spellings
    separated by spaces). A spelling we do not use ourselves is accepted as an alias of this option;
    one written ``~--flag`` is only similar, so it is not accepted but answered with a "did you mean".
    ``flag_value``: the value of a choice flag given bare (``--enable-frame-api`` alone means ``on``).
    """
    meta: dict[str, Any] = {
        "help": help,
        "flags": flags,
        "metavar": metavar,
        "min": minimum,
        "max": maximum,
        "cli": cli,
    }
    meta.update(flag_value=flag_value, section=section, peers=dict(peers or {}))
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
SessionTickets = Literal["on", "off"]
CodecChoice = Literal["auto", "h2", "ngh2"]


@dataclass
class Config:
    """The resolved configuration of one server run."""

    app: str | None = option(
        None,
        "The application, as MODULE:ATTRIBUTE (e.g. myapp:app).",
        cli=False,
        section="App",
        peers={
            "uvicorn": "APP",
            "gunicorn": "APP_MODULE",
            "hypercorn": "APPLICATION",
            "granian": "APP",
            "h2corn": "target",
        },
    )
    factory: bool = option(
        False,
        "Treat APP as a callable that returns the application.",
        section="App",
        peers={"uvicorn": "--factory", "granian": "--factory", "h2corn": "--factory"},
    )
    app_dir: str = option(
        ".",
        "Directory put first on sys.path before importing APP.",
        metavar="DIR",
        section="App",
        peers={
            "uvicorn": "--app-dir",
            "gunicorn": "~--chdir ~--pythonpath",
            "granian": "--working-dir",
            "h2corn": "--app-dir",
        },
    )
    bind: list[str] = option(
        ["127.0.0.1:8000"],
        "Address to listen on: HOST:PORT, [::1]:PORT, unix:PATH or fd://N. Repeatable.",
        flags=("-b", "--bind"),
        metavar="ADDRESS",
        section="Binding",
        peers={
            "uvicorn": "--host --port --uds --fd",
            "gunicorn": "-b --bind",
            "hypercorn": "-b --bind",
            "granian": "--host --port --uds",
            "h2corn": "-b --bind --host --port",
        },
    )
    certfile: str | None = option(
        None,
        "TLS certificate chain file (PEM). Enables TLS with ALPN h2.",
        metavar="FILE",
        section="TLS",
        peers={
            "uvicorn": "--ssl-certfile",
            "gunicorn": "--certfile",
            "hypercorn": "--certfile",
            "granian": "--ssl-certificate",
            "h2corn": "--certfile",
        },
    )
    keyfile: str | None = option(
        None,
        "TLS private key file (PEM); defaults to the key inside --certfile.",
        metavar="FILE",
        section="TLS",
        peers={
            "uvicorn": "--ssl-keyfile",
            "gunicorn": "--keyfile",
            "hypercorn": "--keyfile",
            "granian": "--ssl-keyfile",
            "h2corn": "--keyfile",
        },
    )
    keyfile_password: str | None = option(
        None,
        "Password for an encrypted --keyfile.",
        metavar="PASSWORD",
        section="TLS",
        peers={
            "uvicorn": "--ssl-keyfile-password",
            "hypercorn": "--keyfile-password",
            "granian": "--ssl-keyfile-password",
        },
    )
    self_signed: bool = option(
        False,
        "Serve TLS with a throwaway in-memory certificate for localhost (development only).",
        section="TLS",
    )
    cert: list[str] = option(
        [],
        "Extra certificate for one TLS server name (SNI), as HOSTNAME=CERTFILE:KEYFILE; HOSTNAME may be "
        "*.example.com (one label). Other names get --certfile. Repeatable; reloaded on SIGHUP.",
        metavar="HOST=CERT:KEY",
        section="TLS",
    )
    ca_certs: str | None = option(
        None,
        "CA certificates (PEM) that client certificates are verified against (mTLS).",
        metavar="FILE",
        section="TLS",
        peers={
            "uvicorn": "--ssl-ca-certs",
            "gunicorn": "--ca-certs",
            "hypercorn": "--ca-certs",
            "granian": "--ssl-ca",
            "h2corn": "--ca-certs",
        },
    )
    verify_client: VerifyClient = option(
        "none",
        "Client certificates (mTLS, needs --ca-certs): none, optional (verified if sent) or required. "
        "A failed verification ends the handshake.",
        section="TLS",
        peers={
            "uvicorn": "~--ssl-cert-reqs",
            "gunicorn": "~--cert-reqs",
            "hypercorn": "~--verify-mode",
            "granian": "~--ssl-client-verify",
            "h2corn": "--cert-reqs",
        },
    )
    ocsp_response: str | None = option(
        None,
        "DER OCSP response to staple for --certfile (refreshed on SIGHUP); stale or mismatched ones are not stapled.",
        metavar="FILE",
        section="TLS",
    )
    ssl_min_version: TLSVersion = option(
        "1.2",
        "Lowest TLS version accepted: 1.2 or 1.3.",
        section="TLS",
        peers={"uvicorn": "~--ssl-version", "granian": "~--ssl-protocol-min"},
    )
    ciphers: str | None = option(
        None,
        "TLS 1.2 cipher list (OpenSSL syntax); only ECDHE+AEAD suites are allowed (RFC 9113 §9.2.2). "
        "Default: ECDHE with AES-GCM and ChaCha20-Poly1305.",
        metavar="LIST",
        section="TLS",
        peers={"uvicorn": "--ssl-ciphers", "gunicorn": "--ciphers", "hypercorn": "--ciphers"},
    )
    root_path: str = option(
        "",
        "ASGI root_path / WSGI SCRIPT_NAME, for an app mounted below a URL prefix.",
        metavar="PATH",
        section="App",
        peers={
            "uvicorn": "--root-path",
            "hypercorn": "--root-path",
            "granian": "--url-path-prefix",
            "h2corn": "--root-path -r",
        },
    )
    log_level: LogLevel = option(
        "info",
        "Logging level.",
        section="Logging and metrics",
        peers={
            "uvicorn": "--log-level",
            "gunicorn": "--log-level",
            "hypercorn": "--log-level",
            "granian": "--log-level",
        },
    )
    access_log: bool = option(
        True,
        "Log one line per request (stream); see --access-log-format.",
        section="Logging and metrics",
        peers={"uvicorn": "--access-log", "granian": "--access-log", "h2corn": "--access-log"},
    )
    ssl_groups: list[str] = option(
        ["X25519", "P-256", "P-384"],
        "TLS key-exchange groups offered, in order of preference (OpenSSL names, separated by commas or repeated; "
        "e.g. X25519MLKEM768 for the post-quantum hybrid where OpenSSL has it).",
        metavar="GROUPS",
        section="TLS",
    )
    ssl_session_tickets: SessionTickets = option(
        "on",
        "TLS session tickets for resumption: on (the key lives in this process only and is renewed every "
        "--ssl-ticket-key-lifetime) or off (no tickets and no session cache: every handshake is a full one).",
        section="TLS",
    )
    ssl_ticket_key_lifetime: float = option(
        3600.0,
        "Seconds a session-ticket key encrypts new tickets before a fresh one replaces it; tickets under an "
        "older key then get a full handshake.",
        minimum=1,
        section="TLS",
    )
    # -- logs, metrics, proxies (h2gate/observe/accesslog.py, metrics.py, proxy.py, proxy_protocol.py) --
    access_log_format: str = option(
        '%(peer)s - "%(r)s" %(status)s %(B)s %(L)ss stream=%(stream)s',
        "Access log line, with Gunicorn-style atoms such as %(h)s %(r)s %(s)s %(B)s %(D)s %({name}i)s "
        "%({name}o)s and our own %(stream)s %(alpn)s %(tls)s (docs: Operations, Logging).",
        metavar="FORMAT",
        section="Logging and metrics",
        peers={"gunicorn": "--access-logformat", "hypercorn": "--access-logformat", "granian": "--access-log-fmt"},
    )
    log_format: LogFormat = option(
        "text",
        "Log line format: text, or json (one JSON object per line).",
        section="Logging and metrics",
        peers={"h2corn": "--log-format"},
    )
    access_logfile: str | None = option(
        None,
        "Where access lines go: - for stdout, or a file (appended). Default: with the error log.",
        metavar="FILE",
        section="Logging and metrics",
        peers={"gunicorn": "--access-logfile", "hypercorn": "--access-logfile"},
    )
    error_logfile: str = option(
        "-",
        "Where the error log goes: - for stderr, or a file (appended).",
        metavar="FILE",
        section="Logging and metrics",
        peers={"gunicorn": "--error-logfile --log-file", "hypercorn": "--error-logfile --log-file"},
    )
    log_config: str | None = option(
        None,
        "A logging.dictConfig file (.json or .toml) that replaces h2gate's own log setup.",
        metavar="FILE",
        section="Logging and metrics",
        peers={
            "uvicorn": "--log-config",
            "gunicorn": "--log-config",
            "hypercorn": "--log-config",
            "granian": "--log-config",
        },
    )
    metrics_bind: str | None = option(
        None,
        "Serve Prometheus metrics over HTTP/1.1 at HOST:PORT (path /metrics), apart from the app's binds. "
        "Needs h2gate[metrics].",
        metavar="HOST:PORT",
        section="Logging and metrics",
        peers={"granian": "~--metrics-address"},
    )
    proxy_headers: bool = option(
        False,
        "Take client address, scheme and host from Forwarded / X-Forwarded-* sent by trusted peers.",
        section="Proxies",
        peers={"uvicorn": "--proxy-headers", "h2corn": "--proxy-headers"},
    )
    forwarded_allow_ips: list[str] = option(
        ["127.0.0.1", "::1"],
        "Peers whose proxy headers are trusted: addresses or CIDR networks, comma-separated; * trusts all.",
        metavar="IPS",
        section="Proxies",
        peers={
            "uvicorn": "--forwarded-allow-ips",
            "gunicorn": "--forwarded-allow-ips",
            "h2corn": "--forwarded-allow-ips",
        },
    )
    proxy_protocol: bool = option(
        False,
        "Every connection on every bind starts with a PROXY protocol v1 or v2 header (HAProxy, AWS NLB); "
        "connections without a valid one are closed.",
        section="Proxies",
        peers={"gunicorn": "--proxy-protocol", "h2corn": "~--proxy-protocol"},
    )
    server_header: bool = option(
        True,
        "Add a 'server: h2gate' header to responses.",
        section="HTTP/2",
        peers={"uvicorn": "--server-header", "h2corn": "~--server-header"},
    )
    graceful_timeout: float = option(
        30.0,
        "Seconds in-flight streams get to finish after SIGTERM/SIGINT before they are cancelled.",
        minimum=0,
        section="Limits and timeouts",
        peers={
            "uvicorn": "--timeout-graceful-shutdown",
            "gunicorn": "--graceful-timeout",
            "hypercorn": "--graceful-timeout",
            "granian": "~--workers-kill-timeout",
            "h2corn": "--timeout-graceful-shutdown",
        },
    )
    loop: AppLoop = option(
        "asyncio",
        "Event loop the ASGI app runs in: asyncio (what most apps, Django included, need) "
        "or trio (for trio/anyio apps: no asyncio bridge, fastest).",
        section="App",
        peers={"uvicorn": "--loop", "hypercorn": "~-k ~--worker-class", "granian": "--loop", "h2corn": "--loop"},
    )
    lifespan: Lifespan = option(
        "auto",
        "ASGI lifespan protocol: auto (use it if the app supports it), on, off.",
        section="App",
        peers={"uvicorn": "--lifespan", "h2corn": "--lifespan"},
    )
    interface: Interface = option(
        "auto",
        "Application interface: auto (tell ASGI from WSGI by the app's call signature, without calling it), "
        "asgi or wsgi.",
        section="App",
        peers={"uvicorn": "--interface", "granian": "--interface"},
    )
    threads: int = option(
        10,
        "WSGI worker threads: app calls running at once (more streams wait for a free thread). "
        "Fixed rather than per CPU: WSGI apps mostly wait on I/O, and the GIL runs one at a time anyway.",
        minimum=1,
        maximum=1024,
        section="App",
        peers={"gunicorn": "--threads", "granian": "--blocking-threads"},
    )
    max_concurrent_streams: int = option(
        100,
        "SETTINGS_MAX_CONCURRENT_STREAMS: open streams allowed per connection.",
        minimum=1,
        maximum=2**31 - 1,
        section="HTTP/2",
        peers={"granian": "--http2-max-concurrent-streams", "h2corn": "--max-concurrent-streams"},
    )
    initial_window_size: int = option(
        262_144,
        "SETTINGS_INITIAL_WINDOW_SIZE: request-body bytes a client may send per stream before the app reads them.",
        minimum=1,
        maximum=2**31 - 1,
        section="HTTP/2",
        peers={"granian": "--http2-initial-stream-window-size", "h2corn": "--h2-initial-stream-window-size"},
    )
    connection_window_size: int = option(
        1_048_576,
        "Connection-level receive window: request-body bytes buffered per connection across all streams.",
        minimum=65_535,
        maximum=2**31 - 1,
        section="HTTP/2",
        peers={"granian": "--http2-initial-connection-window-size", "h2corn": "--h2-initial-connection-window-size"},
    )
    max_window_size: int = option(
        16 * 1024 * 1024,
        "Adaptive flow control: the largest receive window a request body's stream grows to. Windows grow from "
        "the bytes the app consumes per round trip (measured with PINGs) while an upload is held back by them, "
        "and shrink back to --initial-window-size once the app takes nothing for 2s. Bounded further by the "
        "request's content-length and --max-body-size. Up to --initial-window-size: fixed stream windows.",
        minimum=0,
        maximum=2**31 - 1,
        section="HTTP/2",
        peers={"granian": "~--http2-adaptive-window"},
    )
    max_connection_window_size: int = option(
        16 * 1024 * 1024,
        "Adaptive flow control: the largest connection-level receive window, i.e. the most request-body bytes "
        "a connection may buffer before its apps read them. Up to --connection-window-size: a fixed window.",
        minimum=0,
        maximum=2**31 - 1,
        section="HTTP/2",
    )
    max_header_list_size: int = option(
        65_536,
        "SETTINGS_MAX_HEADER_LIST_SIZE: largest request header block accepted, in bytes.",
        minimum=1024,
        section="HTTP/2",
        peers={
            "gunicorn": "~--limit-request-field_size",
            "granian": "--http2-max-headers-size",
            "h2corn": "--h2-max-header-list-size",
        },
    )
    max_frame_size: int = option(
        16_384,
        "SETTINGS_MAX_FRAME_SIZE: largest frame payload accepted.",
        minimum=16_384,
        maximum=16_777_215,
        section="HTTP/2",
        peers={"granian": "--http2-max-frame-size", "h2corn": "~--h2-max-inbound-frame-size"},
    )
    codec: CodecChoice = option(
        "auto",
        "HTTP/2 codec: h2 (pure Python, always installed), ngh2 (libnghttp2, several times faster; "
        "pip install 'h2gate[fast]'), or auto: ngh2 when it is installed, else h2. Both enforce the same limits "
        "and pass the same conformance tests.",
        section="HTTP/2",
    )
    keep_alive_timeout: float = option(
        60.0,
        "Close a connection (GOAWAY NO_ERROR) after this many idle seconds with no open streams.",
        minimum=0,
        section="Limits and timeouts",
        peers={
            "uvicorn": "--timeout-keep-alive",
            "gunicorn": "--keep-alive",
            "hypercorn": "--keep-alive",
            "h2corn": "--timeout-keep-alive",
        },
    )
    handshake_timeout: float = option(
        10.0,
        "Seconds a client gets to finish the TLS handshake and send the HTTP/2 preface.",
        minimum=0.1,
        section="Limits and timeouts",
        peers={"h2corn": "--timeout-handshake"},
    )
    http1_answer: bool = option(
        True,
        "Answer plain HTTP/1.1 requests with '505 HTTP Version Not Supported' and a hint; off: just close.",
        section="HTTP/2",
        peers={"h2corn": "~--http1"},
    )
    ws_http1: bool = option(
        True,
        "Serve HTTP/1.1 WebSocket upgrades (RFC 6455; GET + Upgrade: websocket) to ASGI apps, cleartext and "
        "over TLS with ALPN http/1.1. Browsers open a WebSocket over HTTP/2 (RFC 8441) only on an HTTP/2 "
        "connection they already have; with none (a page served from another origin) they open a new "
        "connection offering only http/1.1. Other HTTP/1.1 requests still get the 505.",
        section="WebSockets",
    )
    ws_max_message_size: int = option(
        16 * 1024 * 1024,
        "Largest WebSocket message accepted, in bytes (after decompression); a bigger one closes the "
        "connection with code 1009.",
        minimum=1,
        section="WebSockets",
        peers={"uvicorn": "--ws-max-size", "h2corn": "--websocket-max-message-size"},
    )
    frame_api: FrameAPI = option(
        "off",
        "ASGI extension h2gate.frames for testing HTTP/2 clients: an event for each frame, and raw frame writes "
        "that can break the protocol on purpose. on (the bare flag; loopback binds only) or unsafe-any-bind.",
        flags=("--enable-frame-api",),
        flag_value="on",
        section="Development",
    )
    max_resets_per_second: int = option(
        200,
        "Client RST_STREAMs tolerated per second per connection before GOAWAY ENHANCE_YOUR_CALM (rapid reset).",
        minimum=1,
        section="Limits and timeouts",
    )
    # -- attack resistance (docs/security.md) --
    max_control_frames: int = option(
        1000,
        "PING and SETTINGS frames answered while our replies wait to be written (the client does not read) "
        "before GOAWAY ENHANCE_YOUR_CALM (PING/SETTINGS flood).",
        minimum=16,
        maximum=1_000_000,
        section="Limits and timeouts",
    )
    max_empty_frames_per_second: int = option(
        100,
        "Empty DATA frames without END_STREAM and empty HEADERS/CONTINUATION fragments tolerated per second per "
        "connection before GOAWAY ENHANCE_YOUR_CALM (empty-frame flood).",
        minimum=1,
        section="Limits and timeouts",
    )
    max_priority_frames_per_second: int = option(
        1000,
        "PRIORITY and PRIORITY_UPDATE frames tolerated per second per connection before GOAWAY ENHANCE_YOUR_CALM "
        "(priority flood). Browsers send a handful per page.",
        minimum=10,
        section="Limits and timeouts",
    )
    max_window_updates_per_second: int = option(
        1000,
        "WINDOW_UPDATE frames tolerated per second per connection, on top of two for every DATA frame we sent "
        "in that second, before GOAWAY ENHANCE_YOUR_CALM (window-update flood).",
        minimum=10,
        section="Limits and timeouts",
    )
    header_timeout: float = option(
        10.0,
        "Seconds a client gets to finish a header block (HEADERS to the last CONTINUATION) before GOAWAY "
        "ENHANCE_YOUR_CALM (slowloris, CONTINUATION flood).",
        minimum=0.1,
        section="Limits and timeouts",
        peers={"granian": "~--http1-header-read-timeout", "h2corn": "--timeout-request-header"},
    )
    body_timeout: float = option(
        60.0,
        "Seconds a request body may go without DATA (while nothing of it waits for the app) before the stream is "
        "reset with RST_STREAM CANCEL; WebSockets are exempt; 0 disables.",
        minimum=0,
        section="Limits and timeouts",
        peers={"hypercorn": "~--read-timeout", "h2corn": "--timeout-request-body-idle"},
    )
    send_timeout: float = option(
        60.0,
        "Seconds a response may wait for the client: for flow-control window (then RST_STREAM CANCEL) or for the "
        "socket to take our bytes (then the connection is closed); 0 disables.",
        minimum=0,
        section="Limits and timeouts",
        peers={"h2corn": "~--h2-timeout-write"},
    )
    max_connections: int = option(
        0,
        "Connections each process serves at once; 0: the open-file limit (raised to its hard limit at startup) "
        "less a tenth. At the limit the oldest stalled handshake or idle connection is closed to make room; a new "
        "connection is refused only when all are busy (counted in the metrics, each burst logged with its total).",
        minimum=0,
        section="Limits and timeouts",
        peers={
            "uvicorn": "~--limit-concurrency",
            "gunicorn": "--worker-connections",
            "granian": "~--backpressure",
            "h2corn": "--limit-connections",
        },
    )
    max_body_size: int = option(
        0,
        "Largest request body in bytes: a larger content-length gets 413 before the app runs, a body that grows "
        "past it is reset with RST_STREAM CANCEL. 0: no limit (bodies are streamed under flow control anyway).",
        minimum=0,
        section="Limits and timeouts",
        peers={"h2corn": "--max-request-body-size"},
    )
    backlog: int = option(
        1024,
        "Listen backlog of each bound socket.",
        minimum=1,
        section="Binding",
        peers={
            "uvicorn": "--backlog",
            "gunicorn": "--backlog",
            "hypercorn": "--backlog",
            "granian": "--backlog",
            "h2corn": "--backlog",
        },
    )
    # Process model (h2gate/ops/supervisor.py, reloader.py, systemd.py).
    workers: int = option(
        1,
        "Worker processes. 1 runs a single process; more starts a supervisor that shares the listening sockets "
        "with the workers, restarts dead ones and reloads without downtime on SIGHUP.",
        flags=("-w", "--workers"),
        minimum=1,
        maximum=512,
        section="Workers and reload",
        peers={
            "uvicorn": "--workers",
            "gunicorn": "-w --workers",
            "hypercorn": "-w --workers",
            "granian": "--workers",
            "h2corn": "-w --workers",
        },
    )
    supervise: bool = option(
        False,
        "Run the supervisor even with one worker, so SIGHUP is a full reload without downtime (a new process "
        "imports the app and reads the config again) instead of a certificate reload in place.",
        section="Workers and reload",
    )
    max_requests: int = option(
        0,
        "Replace a worker after it served this many requests (new worker first, then the old drains); 0: never.",
        minimum=0,
        section="Workers and reload",
        peers={
            "uvicorn": "--limit-max-requests",
            "gunicorn": "--max-requests",
            "hypercorn": "--max-requests",
            "h2corn": "--max-requests",
        },
    )
    max_requests_jitter: int = option(
        0,
        "Add a random 0..N to the request limit of each worker, so workers are not all replaced at once.",
        minimum=0,
        section="Workers and reload",
        peers={
            "uvicorn": "--limit-max-requests-jitter",
            "gunicorn": "--max-requests-jitter",
            "hypercorn": "--max-requests-jitter",
            "h2corn": "--max-requests-jitter",
        },
    )
    reload: bool = option(
        False,
        "Development: restart the worker when a watched file changes (needs the watchfiles package).",
        section="Workers and reload",
        peers={
            "uvicorn": "--reload",
            "gunicorn": "--reload",
            "hypercorn": "--reload",
            "granian": "--reload",
            "h2corn": "--reload",
        },
    )
    reload_dir: list[str] = option(
        [],
        "Directory watched by the reloader (default: the app directory). Repeatable.",
        metavar="DIR",
        section="Workers and reload",
        peers={"uvicorn": "--reload-dir", "granian": "--reload-paths", "h2corn": "--reload-dir"},
    )
    reload_include: list[str] = option(
        ["*.py"],
        "File name patterns that trigger a reload. Repeatable.",
        metavar="PATTERN",
        section="Workers and reload",
        peers={"uvicorn": "--reload-include", "h2corn": "--reload-include"},
    )
    reload_exclude: list[str] = option(
        [".*", "*~", "__pycache__"],
        "File or directory name patterns the reloader ignores. Repeatable.",
        metavar="PATTERN",
        section="Workers and reload",
        peers={"uvicorn": "--reload-exclude", "granian": "~--reload-ignore-patterns", "h2corn": "--reload-exclude"},
    )
    pid: str | None = option(
        None,
        "Write the PID of the main process here; removed on exit.",
        metavar="FILE",
        section="Workers and reload",
        peers={"gunicorn": "-p --pid", "hypercorn": "-p --pid", "granian": "--pid-file", "h2corn": "--pid"},
    )
    config: str | None = option(
        None,
        "TOML file of options, keys named like the options with underscores (max_concurrent_streams); "
        "h2gate --print-config writes one.",
        metavar="FILE",
        cli=True,
        section="App",
        peers={"gunicorn": "-c --config", "hypercorn": "-c --config", "h2corn": "-c --config"},
    )

    @property
    def use_tls(self) -> bool:
        return bool(self.certfile or self.self_signed)
