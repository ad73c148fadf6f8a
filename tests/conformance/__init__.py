"""Protocol conformance: the server's exact reaction to each rule of RFC 9113 and RFC 7541.

Every test sends frames (or deliberately broken bytes) with the raw
:class:`~tests.conformance.frames.Peer` and asserts the frame and error code
that come back. Transport-independent rules run over h2c prior knowledge, h2c
Upgrade and TLS; the rest on a representative subset. One cleartext and one
TLS server serve the whole package (see ``conftest.py``).

Modules, by section:

* ``test_preface``       RFC 9113 §3.4
* ``test_framing``       §4.1-4.3, §5.5 (frame format, sizes, CONTINUATION, header blocks)
* ``test_stream_states`` §5.1, §5.1.1, §5.1.2
* ``test_frame_types``   §6.1-6.9 (each frame type's own rules)
* ``test_flow_window``   §6.9.1-6.9.2 (windows applied to responses)
* ``test_malformed``     §8.1-8.3 (malformed requests and trailers)
* ``test_hpack``         RFC 7541 decoding errors

Where h2gate deviates from the RFC, the test pins today's behaviour and says
``GAP:`` with the reason; ``grep -rn GAP: tests/conformance`` lists them.
"""
