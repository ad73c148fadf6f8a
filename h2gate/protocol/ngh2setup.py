"""libnghttp2's session as the ngh2 codec sets it up: the limits it is given, and its errors in our words.

Theory of operation. The core keeps every budget h2gate promises
(:mod:`h2gate.protocol.framecheck`, :mod:`h2gate.protocol.guards`), identically
on both codecs, so libnghttp2 is configured to stay out of their way: its own
counters (resets, glitches, queued ACKs, CONTINUATIONs, SETTINGS entries) are
set above ours, and only the header list size is its to enforce, at exactly
our limit, as h2's decoder does. When libnghttp2 still ends a stream or the
connection itself (a malformed request, a flood it counted, a window it saw
overflow), the functions here say so as our seam's errors, in the words the
h2 codec uses for the same event, so a client and the log read the same
either way. :mod:`h2gate.protocol.ngh2codec` has the rest of the codec's theory.
"""

from __future__ import annotations

import ngh2

from h2gate.errors import ConnectionProtocolError, ErrorCode
from h2gate.protocol import codec as seam
from h2gate.protocol.framecheck import MAX_CONTINUATIONS

#: What libnghttp2 is told where only our own limit should apply (its counters never reach it).
_UNLIMITED = 2**31 - 1
#: SETTINGS identifiers (RFC 9113 §6.5.2, RFC 8441 §3, RFC 9218 §2.1).
ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW, MAX_FRAME, MAX_HEADER_LIST = 0x2, 0x3, 0x4, 0x5, 0x6
ENABLE_CONNECT_PROTOCOL, NO_RFC7540_PRIORITIES = 0x8, 0x9
#: What ngh2 raises for a stream it no longer has, or once the session is over or winding down
#: ("Connection is terminating": our final GOAWAY sent and nothing left to read or write).
STATE_ERRORS = (ngh2.StreamUnavailableError, ngh2.ConnectionStateError, ngh2.ConnectionClosingError)
SEND_ERRORS = (ngh2.StreamProtocolError, ngh2.ConnectionStateError, ngh2.ConnectionClosingError)


def configuration(settings: seam.LocalSettings) -> ngh2.Configuration:
    """libnghttp2's limits for our settings: the header list at ours, every budget above the core's."""
    return ngh2.Configuration(
        auto_window_update=False,
        max_inbound_header_list_size=settings.max_header_list_size,
        max_inbound_header_count=settings.max_header_list_size // 32 + 1,  # a field costs at least 32
        max_continuations=MAX_CONTINUATIONS + 1,  # FrameCheck refuses more first
        max_settings=settings.max_frame_size // 6 + 1,  # as many as a frame can carry
        max_outbound_ack=_UNLIMITED,  # drained after every read; the core counts unread replies
        stream_reset_rate_limit=(_UNLIMITED, _UNLIMITED),  # the core's reset budget answers
        glitch_rate_limit=(_UNLIMITED, _UNLIMITED),  # the core's flood budgets answer
        max_send_header_block_length=16 * 1024 * 1024,
    )


def _stream_reason(code: int) -> str:
    if code == ErrorCode.STREAM_CLOSED:
        return "frame on a stream that was already closed"
    if code == ErrorCode.FLOW_CONTROL_ERROR:
        return "the stream's flow-control window was exceeded"
    if code == ErrorCode.REFUSED_STREAM:
        return "refused by libnghttp2"
    return "stream error"


def reset_by_codec(event: ngh2.StreamClosed) -> seam.StreamProtocolError:
    """A stream libnghttp2 reset itself, in words (it names no field of a malformed request)."""
    code, sid = event.error_code, event.stream_id
    if event.local_error is not None:
        return seam.StreamProtocolError(sid, code, str(event.local_error).removeprefix("HTTP/2 engine error: "))
    if code == ErrorCode.PROTOCOL_ERROR:
        return seam.StreamProtocolError(sid, code, "refused by libnghttp2's checks of RFC 9113 §8.1-8.3", True)
    return seam.StreamProtocolError(sid, code, _stream_reason(code))


#: libnghttp2's words for the limits it counts itself, as the h2 codec words the same events.
_DOS_REASONS = (
    ("header list", "header list larger than SETTINGS_MAX_HEADER_LIST_SIZE"),
    ("CONTINUATION", "too many CONTINUATION frames (flood)"),
)


def raised_error(exc: ngh2.NGH2Error) -> ConnectionProtocolError:
    """ngh2's exception out of ``receive_data`` as our connection error."""
    text = str(exc).removeprefix("HTTP/2 engine error: ")
    if isinstance(exc, ngh2.DenialOfServiceError):
        words = next((ours for key, ours in _DOS_REASONS if key in text), f"flood ({text})")
        return ConnectionProtocolError(words, ErrorCode.ENHANCE_YOUR_CALM)
    if isinstance(exc, ngh2.ConnectionProtocolError):
        return ConnectionProtocolError(text or "protocol error", ErrorCode.PROTOCOL_ERROR)
    return ConnectionProtocolError(f"libnghttp2 failed: {text}", ErrorCode.INTERNAL_ERROR)


def closed_error(event: ngh2.ConnectionClosed) -> ConnectionProtocolError:
    """libnghttp2 ended the connection itself: its code, its reason if it gave one."""
    try:  # not ErrorCode.of: a mypyc build gets its ErrorCode | int back as a bare int (bench/mypyc_tree.py)
        code = ErrorCode(event.error_code)
    except ValueError:  # a code RFC 9113 does not name; a connection error needs one it does
        code = ErrorCode.PROTOCOL_ERROR
    text = event.debug_data.decode("ascii", "replace")
    if not text:
        reasons: dict[int, str] = {
            ErrorCode.FLOW_CONTROL_ERROR: "flow-control window exceeded or overflowed",
            ErrorCode.COMPRESSION_ERROR: "undecodable header block",
            ErrorCode.STREAM_CLOSED: "frame on a stream that was already closed",
            ErrorCode.FRAME_SIZE_ERROR: "frame of a size its type does not allow",
        }
        text = reasons.get(event.error_code, "protocol error")
    return ConnectionProtocolError(text, code)
