"""The key-exchange groups a TLS context offers, set through OpenSSL's ``SSL_CTX_set1_groups_list``.

pyOpenSSL has no public way to set more than one group (``set_tmp_ecdh``
takes a single curve). cryptography's bindings expose the function under
its older name, ``SSL_CTX_set1_curves_list`` (a macro for the same control
in OpenSSL 3 and 4), reached through ``OpenSSL._util`` and the context's
``_context`` pointer. :func:`probe` says whether they are there; without
them :func:`set_groups` returns False and OpenSSL's defaults stay.
"""

from __future__ import annotations

from OpenSSL import SSL

try:
    from OpenSSL._util import lib as _lib
except ImportError:  # pragma: no cover - a pyOpenSSL without these internals
    _lib = None

__all__ = ["probe", "set_groups"]


def probe() -> str | None:
    """None when groups can be set; else what is missing, for a log line."""
    if _lib is None:
        return "OpenSSL._util is gone from pyOpenSSL"
    if not hasattr(_lib, "SSL_CTX_set1_curves_list"):
        return "cryptography's bindings no longer expose SSL_CTX_set1_curves_list"
    if not hasattr(SSL.Context(SSL.TLS_SERVER_METHOD), "_context"):
        return "pyOpenSSL's Context no longer has _context"
    return None


def set_groups(context: SSL.Context, groups: list[str]) -> bool:
    """Offer ``groups`` (OpenSSL names, e.g. X25519, P-256), in that order of preference.

    Returns False when the internals are missing (see :func:`probe`). Raises
    ValueError when OpenSSL accepts none of the list as given (an unknown name).
    """
    if probe() is not None:
        return False
    text = ":".join(groups).encode("ascii")
    if _lib.SSL_CTX_set1_curves_list(context._context, text) != 1:
        # Leave no error queued for the next OpenSSL call to trip on.
        while _lib.ERR_get_error():
            pass
        raise ValueError(f"OpenSSL does not accept the group list {':'.join(groups)!r}")
    return True
