"""A bounded cursor over received bytes.

Every decoder reads through :class:`ByteReader`, so running off the end of the
input is always a :class:`TruncatedData` naming the field and its offset, and
never an ``IndexError`` or a silently short slice.
"""

from __future__ import annotations

from ota_protocols.errors import DecodeError, TruncatedData


class ByteReader:
    __slots__ = ("_data", "_pos", "base_offset")

    def __init__(self, data: bytes, *, base_offset: int = 0) -> None:
        self._data = bytes(data)
        self._pos = 0
        # Offset of data[0] within the enclosing message, so errors name absolute offsets.
        self.base_offset = base_offset

    @property
    def offset(self) -> int:
        """Absolute offset of the next octet."""
        return self.base_offset + self._pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def at_end(self) -> bool:
        return self._pos >= len(self._data)

    def take(self, n: int, field: str) -> bytes:
        pos = self._pos
        end = pos + n
        if n < 0 or end > len(self._data):
            if n < 0:
                raise DecodeError(field, self.offset, f"negative length {n}")
            raise TruncatedData(field, self.offset, n, self.remaining)
        self._pos = end
        return self._data[pos:end]

    def u8(self, field: str) -> int:
        pos = self._pos
        data = self._data
        if pos >= len(data):
            raise TruncatedData(field, self.offset, 1, 0)
        self._pos = pos + 1
        return data[pos]

    def uint(self, n: int, field: str) -> int:
        return int.from_bytes(self.take(n, field), "big")

    def peek_u8(self, field: str) -> int:
        if self._pos >= len(self._data):
            raise TruncatedData(field, self.offset, 1, 0)
        return self._data[self._pos]

    def rest(self) -> bytes:
        data = self._data
        chunk = data[self._pos :] if self._pos else data
        self._pos = len(data)
        return chunk

    def cstring(self, field: str, max_length: int) -> bytes:
        """A NUL-terminated octet string of at most ``max_length`` octets including the NUL."""
        end = self._data.find(b"\x00", self._pos, self._pos + max_length)
        if end < 0:
            if len(self._data) - self._pos < max_length:
                raise TruncatedData(field, self.offset, 1, 0)
            raise DecodeError(field, self.offset, f"no NUL terminator within {max_length} octets")
        value = self._data[self._pos : end]
        self._pos = end + 1
        return value

    def expect_end(self, field: str) -> None:
        if self.remaining:
            raise DecodeError(field, self.offset, f"{self.remaining} unexpected trailing octet(s)")
