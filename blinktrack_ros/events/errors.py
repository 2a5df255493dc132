"""Errors raised by the event decoders (re-exported by `events.decode`)."""

from __future__ import annotations

SUPPORTED_ENCODINGS = ("evt3", "mono")


class UnsupportedEncodingError(ValueError):
    """The packet's encoding is not one we decode; the message names it."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        super().__init__(f"unsupported event encoding {encoding!r} "
                         f"(supported: {', '.join(SUPPORTED_ENCODINGS)})")


class TruncatedPacketError(ValueError):
    """The payload ends early; `offset` is the byte offset where the missing data begins."""

    def __init__(self, what: str, offset: int, size: int) -> None:
        self.offset = offset
        super().__init__(f"truncated {what}: data missing at byte offset {offset} "
                         f"of {size}")
