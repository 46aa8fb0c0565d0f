"""The SIP layer's error types.

Everything the parser and the header/URI helpers reject raises `SipParseError` (or a
subclass: `headers.HeaderError`, `uri.UriError`). `status` is the response a request that
failed this way deserves: 400 unless said otherwise (505 for an unknown SIP version, 513
for an oversized message, 501 for an unknown method whose CSeq does not match, 416 for a
Request-URI scheme we do not serve).
"""

from __future__ import annotations


class SipParseError(ValueError):
    """Bytes that are not a well-formed SIP message (or a header value that is malformed)."""

    def __init__(self, message: str = "", status: int = 400) -> None:
        super().__init__(message)
        # Set on each instance: compiled (ippbx.native), a class-level default of an
        # exception class is not seen through its instances.
        self.status = status
