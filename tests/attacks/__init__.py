"""Attack-resistance tests: each known HTTP/2 denial-of-service attack, performed against the real server.

Every test asserts three things: the attacking connection ends the way the
"Limits and attack resistance" table (docs/security.md) says (GOAWAY, RST_STREAM or a
close) with its log line; the server's resident memory stays under
:data:`tests.attacks.conftest.MEMORY_BOUND_MB` more than before the attack;
and a well-behaved client on another connection is served while the attack
is under way.
"""
