"""One HTTP POST to one origin, with a total deadline and a cap on the answer's size: the judge client's transport.

``urllib.request.urlopen`` follows redirects (sending the request's headers, the API key among them, to whatever
host the ``Location`` names), applies its timeout to each socket read (a server that drips one byte a second holds
it forever), and reads a body of any size. :func:`post` does none of that:

- it speaks to the URL's host and port only: a redirect (3xx) comes back as an :class:`HTTPAnswer` like any other
  status, and the caller refuses it (``air_align.rewards.server_judge``);
- the whole exchange (connect, send, status line, headers, body) ends within ``timeout_s``: a timer shuts the socket
  down at the deadline, which ends a blocked read at once, and the call raises :class:`DeadlineExceeded`;
- a body over ``max_bytes`` (announced by ``Content-Length`` or met while reading) raises
  :class:`AnswerTooLarge` without reading the rest.

No proxy is used (``http_proxy`` is ignored): the judge is a server you run, reached directly. Standard library only.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


class DeadlineExceeded(TimeoutError):
    """No complete answer within the total deadline."""


class NoConnection(ConnectionError):
    """No connection could be made within the deadline (nothing answers at that address)."""


class AnswerTooLarge(ValueError):
    """An answer body over the size cap."""


class CutShort(ValueError):
    """A body shorter than its ``Content-Length``: the connection closed early."""


@dataclass
class HTTPAnswer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def _connection(url: str, timeout_s: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url}: not an http:// or https:// URL")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        context = ssl.create_default_context()
        return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout_s, context=context), path
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s), path


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float, max_bytes: int) -> HTTPAnswer:
    """POST ``body`` to ``url``; the status, headers and body of the answer, whatever the status.

    Raises:
        DeadlineExceeded: the answer was not complete within ``timeout_s`` seconds in all.
        AnswerTooLarge: the body is over ``max_bytes``. CutShort: the body ended before its ``Content-Length``.
        OSError, http.client.HTTPException: the connection failed (refused, reset, a malformed status line).
    """
    deadline = time.monotonic() + timeout_s
    connection, path = _connection(url, timeout_s)
    expired = threading.Event()
    sockets: list[socket.socket] = []  # the connection's socket; http.client drops its own reference early

    def expire() -> None:  # runs in the timer's thread: ends any blocked read of the request's thread
        expired.set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(timeout_s, expire)
    timer.daemon = True
    timer.start()
    try:
        try:
            connection.connect()  # bounded by timeout_s on its own
        except TimeoutError:  # nothing answers at that address: unreachable rather than slow
            raise NoConnection(f"no connection within {timeout_s:g} s") from None
        sockets.append(connection.sock)
        if expired.is_set():
            raise DeadlineExceeded()
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        announced = response.getheader("Content-Length")
        if announced is not None and announced.strip().isdigit() and int(announced) > max_bytes:
            raise AnswerTooLarge(f"an answer of {int(announced):,} bytes announced, over the cap of {max_bytes:,}")
        chunks, size = [], 0
        while not response.isclosed():  # http.client closes it once Content-Length bytes are read
            remaining = deadline - time.monotonic()
            if remaining <= 0 or expired.is_set():
                raise DeadlineExceeded()
            sockets[0].settimeout(remaining)  # each read ends by the deadline, timer or not
            chunk = response.read(min(1 << 16, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise AnswerTooLarge(f"an answer of more than {max_bytes:,} bytes (the cap); reading stopped there")
        if expired.is_set():  # the shutdown ends a read as if the body had ended
            raise DeadlineExceeded()
        data = b"".join(chunks)
        if announced is not None and announced.strip().isdigit() and len(data) < int(announced):
            raise CutShort(f"a body cut short ({len(data)} of {int(announced)} bytes)")
        return HTTPAnswer(response.status, response.headers, data)
    except (AnswerTooLarge, CutShort, NoConnection, ConnectionRefusedError):
        raise
    except (OSError, http.client.HTTPException) as err:
        if expired.is_set() or isinstance(err, TimeoutError):
            raise DeadlineExceeded(f"no complete answer within {timeout_s:g} s") from None
        raise
    finally:
        timer.cancel()
        connection.close()


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds, or an HTTP date); None when absent or unreadable.

    >>> retry_after_s("3"), retry_after_s(None), retry_after_s("soon")
    (3.0, None, None)
    >>> retry_after_s("Wed, 21 Oct 2015 07:28:05 GMT", now=1445412480.0)  # 5 s after now
    5.0
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))
