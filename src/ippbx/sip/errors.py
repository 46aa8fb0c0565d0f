"""The SIP layer's error types."""


class SipParseError(ValueError):
    """Bytes that are not a well-formed SIP message (or a header value that is malformed)."""
