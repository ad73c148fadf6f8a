"""``python -m h2gate.healthcheck [URL]``: one HTTP/2 GET, exit 0 if the answer is 2xx/3xx.

Why this exists: h2gate answers HTTP/1.1 with ``505``, so ``curl -f``, wget,
Docker's usual probes and the kubelet's ``httpGet`` probes all see a failure.
This probe speaks HTTP/2 itself (the ``h2`` state machine over a blocking
socket): h2c with prior knowledge for ``http://`` URLs, TLS with ALPN ``h2``
for ``https://``. It needs nothing the server does not already have installed,
so curl-less images can use it as their ``HEALTHCHECK``.

Without a URL it probes the server configured by the environment (the same
``H2GATE_*`` variables and ``H2GATE_CONFIG`` file h2gate reads): the first TCP
bind, with a wildcard host replaced by loopback. That probe is the container
checking its own process, so when TLS is on it does not verify the certificate
(which names the public host, not 127.0.0.1).

Exit codes: 0 healthy, 1 unhealthy or unreachable (one line on stderr says
why), 2 bad usage. Everything is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
import time
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions

DEFAULT_TIMEOUT = 5.0
RECV_SIZE = 65_536


class ProbeFailed(Exception):
    """The server is not healthy, or could not be asked; the message says why."""


def url_from_config() -> tuple[str, bool]:
    """The probe URL for the server the environment configures, and whether to skip TLS verification.

    Raises ProbeFailed when the configuration is invalid or has no TCP bind.
    """
    from h2gate.config import load_config
    from h2gate.errors import ConfigError
    from h2gate.net.binds import parse_bind

    try:
        config = load_config()
        binds = [parse_bind(b) for b in config.bind]
    except ConfigError as exc:
        raise ProbeFailed(f"cannot derive the URL from the configuration: {exc}") from None
    tcp = [b for b in binds if b.kind == "tcp"]
    if not tcp:
        raise ProbeFailed("no TCP bind in the configuration: pass the URL to probe")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(tcp[0].host, tcp[0].host)
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.use_tls else "http"
    return f"{scheme}://{host}:{tcp[0].port}/", config.use_tls


def probe(url: str, *, timeout: float = DEFAULT_TIMEOUT, cafile: str | None = None, insecure: bool = False) -> int:
    """GET ``url`` over HTTP/2 and return the final status code.

    Raises ProbeFailed on a bad URL, a connection or TLS failure, a refused
    h2 negotiation, a reset stream, GOAWAY before the answer, or the timeout.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProbeFailed(f"bad URL {url!r}: expected http://HOST[:PORT]/PATH or https://...")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ProbeFailed(f"bad URL {url!r}: {exc}") from None
    deadline = time.monotonic() + timeout
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        sock = socket.create_connection((parts.hostname, port), timeout=timeout)
    except OSError as exc:
        raise ProbeFailed(f"cannot connect to {parts.hostname}:{port}: {exc.strerror or exc}") from None
    try:
        if parts.scheme == "https":
            sock = _start_tls(sock, parts.hostname, cafile, insecure)
        return _exchange(sock, parts.scheme, parts.netloc, path, deadline)
    except TimeoutError:
        raise ProbeFailed(f"no answer within {timeout:g}s") from None
    except ssl.SSLError as exc:
        raise ProbeFailed(f"TLS failed: {exc.reason or exc}") from None
    except OSError as exc:
        raise ProbeFailed(f"connection failed: {exc.strerror or exc}") from None
    finally:
        sock.close()


def _start_tls(sock: socket.socket, hostname: str, cafile: str | None, insecure: bool) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=cafile)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    tls = context.wrap_socket(sock, server_hostname=hostname)
    if tls.selected_alpn_protocol() != "h2":
        tls.close()
        raise ProbeFailed(f"the server did not agree to HTTP/2 (ALPN: {tls.selected_alpn_protocol()})")
    return tls


def _exchange(sock: socket.socket, scheme: str, authority: str, path: str, deadline: float) -> int:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    headers = [
        (":method", "GET"),
        (":scheme", scheme),
        (":authority", authority),
        (":path", path),
        ("user-agent", "h2gate-healthcheck"),
    ]
    conn.send_headers(1, headers, end_stream=True)
    sock.sendall(conn.data_to_send())
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        data = sock.recv(RECV_SIZE)
        if not data:
            raise ProbeFailed("the server closed the connection before answering")
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            raise ProbeFailed(f"HTTP/2 protocol error from the server: {exc}") from None
        for event in events:
            status = _status_of(event)
            if status is not None:
                # The status is all we need: say goodbye instead of reading the body.
                conn.close_connection()
                sock.sendall(conn.data_to_send())
                return status
        sock.sendall(conn.data_to_send())


def _status_of(event: h2.events.Event) -> int | None:
    """The final status carried by ``event``, None to keep reading; raises ProbeFailed on an ending event."""
    if isinstance(event, h2.events.ResponseReceived):
        for name, value in event.headers:
            if name == ":status":
                return int(value)
        raise ProbeFailed("response without :status")
    if isinstance(event, h2.events.StreamReset):
        raise ProbeFailed(f"the server reset the request ({event.error_code!r})")
    if isinstance(event, h2.events.ConnectionTerminated):
        raise ProbeFailed(f"the server sent GOAWAY ({event.error_code!r}) before answering")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m h2gate.healthcheck",
        description="Probe an h2gate server over HTTP/2: exit 0 on a 2xx/3xx answer, 1 otherwise.",
    )
    parser.add_argument(
        "url", nargs="?", help="http:// (h2c prior knowledge) or https:// (ALPN h2); default: from H2GATE_* variables"
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="overall seconds (default 5)")
    parser.add_argument("--cafile", help="CA certificates (PEM) to verify the server with")
    parser.add_argument("--insecure", action="store_true", help="do not verify the server certificate")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing when healthy")
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error("--timeout must be a positive number")
    try:
        url, insecure = (args.url, args.insecure) if args.url else url_from_config()
        status = probe(url, timeout=args.timeout, cafile=args.cafile, insecure=insecure or args.insecure)
    except ProbeFailed as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if 200 <= status < 400:
        if not args.quiet:
            print(f"healthy: {status} from {url}")
        return 0
    print(f"unhealthy: {status} from {url}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
