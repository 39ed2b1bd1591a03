"""The TCP byte stream under the OTA server's SMPP link: what smpplib's ``Client`` reads and writes.

Clauses: SMPP 3.4 §2.2 (the ESME opens the TCP connection), §3.2 (command_length frames
every PDU and counts the 16-octet header).

Why this exists. smpplib 2.2.4's ``Client`` creates, connects and reads its socket itself,
blocking, with one timeout for connect and read alike; it reports every way a connect can
fail (unknown host, refused, timed out) as ``ConnectionError("Connection refused")``; a
blocked ``read_pdu`` cannot be interrupted by another thread; and it trusts any
command_length, so an HTTP server's ``HTTP`` (0x48545450) makes it wait for 1.2 GB. Its one
public seam to the socket is the ``ssl_context`` constructor argument: ``Client.connect()``
calls ``ssl_context.wrap_socket(sock)`` once and from then on calls only ``connect``,
``sendall``, ``recv`` and ``close`` on what it got back. :class:`SocketFactory` goes there
and hands smpplib an :class:`SmppStream` instead, which

* connects itself: resolves the name (a failure says so; ``getaddrinfo`` blocks, the one
  wait nothing can cut short), connects without blocking, bounded by a deadline and
  interruptible by a :class:`Waker`, and names what went wrong;
* takes what smpplib writes (``send_pdu`` -> ``sendall``) into a buffer, written without
  blocking whenever the link thread waits, so one ``send`` carries a whole turn's PDUs;
* reads with one ``recv`` per wake-up, cuts PDUs with the shared :class:`PduFramer`
  (its command_length guard turns a non-SMPP peer into one clear line) and serves
  smpplib's ``read_pdu`` from exactly one whole PDU staged by the link, so ``read_pdu``
  never blocks and never reads past a PDU boundary.

smpplib still builds, parses and numbers every PDU and keeps the bind state; this module
moves bytes and says why the connection ended. Errors are ``ConnectionLost`` or
``PeerTimeout`` (``ota_protocols.errors``) with a one-line reason and no host prefix: the
link adds ``SMSC host:port:``.

Glossary: PDU protocol data unit; ESME external short message entity (us); SMSC short
message service centre; EOF end of stream (the peer closed).
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import threading
import time

from ota_protocols.errors import ConnectionLost, PeerTimeout
from ota_protocols.smpp.framing import FramingBroken, PduFramer

__all__ = ["RECV_BYTES", "SmppStream", "SocketFactory", "Waker"]

# One recv takes up to this much (some 2,000 deliver_sm): few system calls, so the link thread
# rarely waits to get the GIL back from a busy event loop thread.
RECV_BYTES = 1 << 18
SOCKET_BUFFER_BYTES = 1 << 20
_READ_WRITE = selectors.EVENT_READ | selectors.EVENT_WRITE
_CONNECTING = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, errno.EALREADY})


class Waker:
    """A socket pair that interrupts the link thread's waits; :meth:`wake` is safe from any thread.

    The flag saves a system call per call while a wake-up is already pending: whatever was
    queued before a ``wake`` is seen by the thread, which drains before it looks at its queues.
    """

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._armed = False

    def fileno(self) -> int:
        return self._r.fileno()

    def wake(self) -> None:
        if not self._armed:
            self._armed = True
            # Full (a wake-up is pending anyway) or closed (the link has ended): nothing to do.
            with contextlib.suppress(OSError):
                self._w.send(b"\x00")

    def drain(self) -> None:
        """Take the pending wake-up bytes, THEN disarm. The other order loses wake-ups: a ``wake``
        between disarming and the ``recv`` sends a byte the ``recv`` swallows and leaves the flag
        set with nothing pending, so every later ``wake`` is skipped and the thread sleeps until
        the socket or a timer wakes it (seen as 30 s stalls at the enquire_link timer under load).
        A ``wake`` between the ``recv`` and disarming is skipped, but its work was queued before
        it, and the thread looks at its queues after draining."""
        with contextlib.suppress(OSError):  # one byte per wake-up while armed: one recv takes them all
            self._r.recv(4096)
        self._armed = False

    def close(self) -> None:
        self._r.close()
        self._w.close()


def _strerror(code: int) -> str:
    return os.strerror(code) if code else "unknown error"


class SmppStream:
    """One TCP connection to an SMSC as smpplib's ``Client`` sees it; see the module docstring.

    ``connect_until`` bounds the connect (monotonic clock); ``stopping`` set and the waker
    woken abort a connect in progress.
    """

    def __init__(
        self, host: str, port: int, *, waker: Waker, stopping: threading.Event, connect_until: float
    ) -> None:
        self.host = host
        self.port = port
        self.failure: ConnectionLost | PeerTimeout | None = None  # why connect() failed, for the link
        self.closed_by_peer = False
        self._waker = waker
        self._stopping = stopping
        self._connect_until = connect_until
        self._sock: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._framer = PduFramer()
        self._broken: str | None = None  # the stream cannot be trusted past this (not SMPP)
        self._out = bytearray()
        self._mask = selectors.EVENT_READ
        self._unread: list[bytes] = []
        self._staged = b""
        self._pos = 0

    # ---------------------------------------------------------------- smpplib's side

    def connect(self, address: object) -> None:
        """``Client.connect()`` calls this with its own (host, port), which are ours."""
        try:
            sock = self._open()
        except (ConnectionLost, PeerTimeout) as exc:
            self.failure = exc
            raise OSError(str(exc)) from None  # smpplib maps OSError to its ConnectionError
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a lone response is not held back
        # Room for a burst (a window of submit_sm, a flood of deliver_sm) in one recv / send.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
        selector.register(self._waker, selectors.EVENT_READ)
        self._sock, self._selector = sock, selector

    def sendall(self, data: bytes) -> None:
        """``Client.send_pdu`` -> buffered; :meth:`exchange` writes it without blocking."""
        self._out += data

    def recv(self, bufsize: int) -> bytes:
        """``Client.read_pdu`` asks for 4 octets, then for the rest of the staged PDU."""
        pos = self._pos
        chunk = self._staged[pos : pos + bufsize]
        self._pos = pos + len(chunk)
        return chunk  # never empty while a whole PDU is staged (an empty one smpplib reports as EOF)

    def close(self) -> None:
        selector, self._selector = self._selector, None
        if selector is not None:
            selector.close()
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    # ---------------------------------------------------------------- the link's side

    def stage(self, pdu: bytes) -> None:
        """Make ``pdu`` (one whole PDU from :meth:`exchange`) what smpplib's ``read_pdu`` reads."""
        self._staged = pdu
        self._pos = 0

    def push_back(self, pdus: list[bytes]) -> None:
        """PDUs read but not yet dispatched (those after a bind_transceiver_resp): the next exchange's."""
        self._unread = pdus + self._unread

    def exchange(self, until: float) -> list[bytes]:
        """Write what is buffered, wait until readable, woken or ``until``; return the whole PDUs read.

        Returns ``[]`` when woken or at ``until``. Raises ``ConnectionLost`` on EOF, a socket
        error or an impossible command_length (after handing out the PDUs before it).
        """
        if self._unread:
            unread, self._unread = self._unread, []
            return unread
        if self._broken is not None:
            raise ConnectionLost(self._broken)
        sock, selector = self._sock, self._selector
        if sock is None or selector is None:
            raise ConnectionLost("not connected")
        if self._out:
            self._send_some(sock)
        mask = _READ_WRITE if self._out else selectors.EVENT_READ
        if mask != self._mask:
            selector.modify(sock, mask)
            self._mask = mask
        ready = selector.select(max(0.0, until - time.monotonic()))
        readable = False
        for key, events in ready:
            if key.fileobj is self._waker:
                self._waker.drain()
            else:
                if events & selectors.EVENT_WRITE:
                    self._send_some(sock)
                readable = bool(events & selectors.EVENT_READ)
        if not readable:
            return []
        try:
            data = sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError as exc:
            raise ConnectionLost(f"connection lost: {exc.strerror or exc}") from None
        if not data:
            self.closed_by_peer = True
            raise ConnectionLost("the SMSC closed the connection")
        try:
            return self._framer.feed(data)
        except FramingBroken as exc:
            self._broken = f"not SMPP: {exc} in {bytes(data[:32])!r}"
            if exc.complete:
                return exc.complete
            raise ConnectionLost(self._broken) from None

    def flush(self, until: float) -> bool:
        """Write everything buffered, waiting at most until ``until``; True when all went out."""
        sock = self._sock
        while sock is not None and self._out:
            self._send_some(sock)
            remaining = until - time.monotonic()
            if not self._out or remaining <= 0:
                break
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_WRITE)
                selector.select(remaining)
        return not self._out

    def _send_some(self, sock: socket.socket) -> None:
        try:
            sent = sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            raise ConnectionLost(f"connection lost: {exc.strerror or exc}") from None
        del self._out[:sent]

    def _open(self) -> socket.socket:
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ConnectionLost(f"cannot resolve host {self.host} ({exc.strerror})") from None
        failure: ConnectionLost | PeerTimeout = ConnectionLost(f"no address for host {self.host}")
        for family, kind, proto, _, address in infos:  # in the resolver's order, as create_connection
            sock = socket.socket(family, kind, proto)
            try:
                self._connect_one(sock, address)
            except (ConnectionLost, PeerTimeout) as exc:
                sock.close()
                failure = exc
                if self._stopping.is_set():
                    break
                continue
            return sock
        raise failure

    def _connect_one(self, sock: socket.socket, address: tuple[object, ...]) -> None:
        started = time.monotonic()
        sock.setblocking(False)
        code = sock.connect_ex(address)
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_WRITE)
            selector.register(self._waker, selectors.EVENT_READ)
            while code in _CONNECTING:
                remaining = self._connect_until - time.monotonic()
                if remaining <= 0:
                    waited = self._connect_until - started  # connect_timeout_s, or what the window left
                    raise PeerTimeout(f"TCP connect timed out after {waited:.3g} s")
                for key, _ in selector.select(remaining):
                    if key.fileobj is self._waker:
                        self._waker.drain()
                        if self._stopping.is_set():
                            raise ConnectionLost("closed while connecting")
                    else:
                        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code == errno.ECONNREFUSED:
            raise ConnectionLost("connection refused")
        if code:
            raise ConnectionLost(f"TCP connect failed: {_strerror(code)}")


class SocketFactory:
    """Passed to smpplib's ``Client`` as ``ssl_context``: its ``wrap_socket`` hands over the stream."""

    def __init__(self, stream: SmppStream) -> None:
        self._stream = stream

    def wrap_socket(self, sock: socket.socket, *args: object, **kwargs: object) -> SmppStream:
        sock.close()  # smpplib's own socket, never connected: the stream opens one per address family
        return self._stream
