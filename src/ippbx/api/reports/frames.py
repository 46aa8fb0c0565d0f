"""Messages between the PBX process and its report courier: one frame per message, a
4-byte big-endian length, then a pickle (the two ends are one program, see
`ippbx.api.reports.courier`)."""

from __future__ import annotations

import pickle
import struct

_HEAD = struct.Struct(">I")

Message = tuple[object, ...]


def frame(message: Message) -> bytes:
    """One message as it goes over the pipe."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEAD.pack(len(data)) + data


class FrameReader:
    """Messages out of the bytes of a pipe, as they arrive."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        buffer = self._buffer
        buffer += data
        messages: list[Message] = []
        start, end = 0, len(buffer)
        while end - start >= 4:
            (size,) = _HEAD.unpack_from(buffer, start)
            if end - start - 4 < size:
                break
            messages.append(pickle.loads(buffer[start + 4:start + 4 + size]))
            start += 4 + size
        if start:
            del buffer[:start]
        return messages
