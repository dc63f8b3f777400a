"""The one bearer-token check of every listener (collector HTTP and gRPC, UI, shared store).

RFC 7235: the auth scheme is case-insensitive (``Bearer``, ``bearer``, ``BEARER``), the token is
compared in constant time. The UI and the query API also accept HTTP Basic with the token as
password, so a browser can log in and open the API's URLs.

Imports nothing from the project.
"""

from __future__ import annotations

import base64
import binascii
import hmac


def token_matches(header: str | None, token: str | None, *, basic: bool = False) -> bool:
    """True when no token is configured, or ``header`` (an ``Authorization`` value) carries it:
    ``Bearer <token>`` in any case of the scheme, or with ``basic`` also ``Basic base64(user:token)``."""
    if not token:
        return True
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        given = value.strip()
    elif basic and scheme == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return False
    else:
        return False
    return hmac.compare_digest(given.encode(), token.encode())
