"""CompactSettings behaves as h2's Settings: the same values, KeyErrors, validation and acknowledge() answers."""

from __future__ import annotations

import h2.exceptions
import h2.settings
import pytest
from hypothesis import given
from hypothesis import strategies as st

from h2gate.internals.h2memory import CompactSettings
from h2gate.internals.probes import H2_SETTINGS, PROBES

pytestmark = pytest.mark.skipif(not PROBES[H2_SETTINGS], reason="h2's Settings layout changed: h2's own class is used")

_KEYS = st.sampled_from([0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x8, 0x9, 0x42])
_VALUES = st.sampled_from([0, 1, 5, 16_384, 65_535, 2**24, 2**31 - 1, 2**31, -1])
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), _KEYS, _VALUES),
        st.tuples(st.just("ack"), st.none(), st.none()),
        st.tuples(st.just("del"), _KEYS, st.none()),
    ),
    max_size=30,
)


def _apply(settings: h2.settings.Settings, op: str, key: int | None, value: int | None) -> object:
    try:
        if op == "set":
            settings[key] = value  # type: ignore[index,assignment]
            return None
        if op == "del":
            del settings[key]  # type: ignore[arg-type]
            return None
        return {int(k): (c.original_value, c.new_value) for k, c in settings.acknowledge().items()}
    except (KeyError, h2.exceptions.InvalidSettingsValueError) as exc:
        return type(exc)


def _view(settings: h2.settings.Settings) -> object:
    out = {}
    for key in list(settings):
        try:
            out[int(key)] = settings[key]
        except KeyError:
            out[int(key)] = "pending"
    return out


@given(client=st.booleans(), ops=_OPS)
def test_compact_settings_match_h2s(client: bool, ops: list[tuple[str, int | None, int | None]]) -> None:
    ours, theirs = CompactSettings(client=client), h2.settings.Settings(client=client)
    for op, key, value in ops:
        assert _apply(ours, op, key, value) == _apply(theirs, op, key, value)
        assert _view(ours) == _view(theirs)
        assert ours == theirs
        assert len(ours) == len(theirs)


def test_initial_values_are_validated_and_kept() -> None:
    values = {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100, h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1}
    ours = CompactSettings(client=False, initial_values=values)
    assert ours.max_concurrent_streams == 100 and ours.initial_window_size == 1
    with pytest.raises(h2.exceptions.InvalidSettingsValueError):
        CompactSettings(client=False, initial_values={h2.settings.SettingCodes.MAX_FRAME_SIZE: 1})


def test_no_deque_per_setting() -> None:
    ours = CompactSettings(client=False)
    assert "_settings" not in vars(ours)
    assert ours._pending is None


def test_frame_dispatch_binds_the_connections_own_methods() -> None:
    import h2.config
    from hyperframe.frame import ExtensionFrame, GoAwayFrame, PingFrame

    from h2gate.internals.h2conn import ServerH2Connection
    from h2gate.internals.h2memory import FrameDispatch
    from h2gate.internals.probes import H2_DISPATCH

    conn = ServerH2Connection(h2.config.H2Configuration(client_side=False))
    table = conn._frame_dispatch_table
    if not PROBES[H2_DISPATCH]:
        assert isinstance(table, dict)
        return
    assert isinstance(table, FrameDispatch)
    assert table[PingFrame] == conn._receive_ping_frame
    assert table[GoAwayFrame].__func__ is ServerH2Connection._receive_goaway_frame  # our override
    assert table[ExtensionFrame].__func__ is ServerH2Connection._receive_unknown_frame
    assert isinstance(conn.remote_settings, CompactSettings)
    with pytest.raises(KeyError):
        table[int]


def test_h2_remembers_a_bounded_number_of_closed_streams() -> None:
    """h2 kept 65,536 closed streams (about 13 MB) per connection; the most recent 1,024 are kept."""
    import h2.config
    import h2.connection

    from h2gate.internals.h2conn import ServerH2Connection
    from h2gate.protocol.codec import LocalSettings
    from h2gate.protocol.h2codec import H2Codec

    codec = H2Codec()
    codec.initiate(LocalSettings(100, 65535, 65535, 65536, 16384, True))
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    codec.receive(client.data_to_send())
    client.receive_data(codec.data_to_send())
    for stream_id in range(1, 2 * 1500, 2):
        client.send_headers(stream_id, [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", "t")])
        client.end_stream(stream_id)
        codec.receive(client.data_to_send())
        codec.send_headers(stream_id, [(b":status", b"204")], True)
        client.receive_data(codec.data_to_send())
    codec.release()
    h2conn = codec._h2
    assert isinstance(h2conn, ServerH2Connection)
    assert len(h2conn._closed_streams) == ServerH2Connection.MAX_CLOSED_STREAMS == 1024
    assert not h2conn.streams
