"""Meta's side of a media fetch: resolve the id to a short-lived URL, stream it, check it."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import requests

from alfred.config import Secret
from alfred.whatsapp.errors import AccessTokenError, GraphError, InvalidParameter
from alfred.whatsapp.graph import GraphClient

MB = 1024 * 1024
# Meta's limits per media type (Cloud API "Supported media types"): stickers 500 KB (animated;
# static ones are 100 KB), images 5 MB, audio and video 16 MB, documents 100 MB.
LIMITS = {
    "image": 5 * MB,
    "audio": 16 * MB,
    "video": 16 * MB,
    "document": 100 * MB,
    "sticker": 500 * 1024,
}
READ_BYTES = 256 * 1024
TIMEOUT = (3.05, 30.0)  # connect, and between two pieces of the body


class MediaError(Exception):
    """A media fetch failed; `reason` says why, `retryable` whether another try may work."""

    reason = "media_error"
    retryable = True

    def as_record(self) -> dict:
        """Return the error as it goes into media_failed and the media row."""
        return {"reason": self.reason, "retryable": self.retryable, "message": str(self)}


class UnknownMedia(MediaError):
    """Meta no longer knows the media id (deleted, older than 7 days, or another number's)."""

    reason = "unknown_media"
    retryable = False


class TooLarge(MediaError):
    """Larger than Meta's limit for the type, by Meta's word or by the bytes that came."""

    reason = "too_large"
    retryable = False


class Incomplete(MediaError):
    """The download ended before the size Meta announced."""

    reason = "download_incomplete"


class HashMismatch(MediaError):
    """The bytes' SHA-256 is not the one Meta gave."""

    reason = "hash_mismatch"


class UrlExpired(MediaError):
    """The media URL's five minutes are up: resolve the id again."""

    reason = "url_expired"


class DownloadFailed(MediaError):
    """Meta could not be reached or answered an error for now."""

    reason = "download_failed"


class TokenRefused(MediaError):
    """Meta refused the tenant's token (190): the token is rotated, then the fetch is retried."""

    reason = "access_token_expired"


@dataclass(frozen=True)
class MediaInfo:
    """What GET /{media-id} answers."""

    url: str
    mime_type: str
    sha256: str  # hex
    file_size: int | None


def _hex_digest(value: str) -> str:
    """Return Meta's SHA-256 as hex: the media endpoint gives hex, webhooks give base64."""
    value = value.strip()
    if len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return value
    return raw.hex() if len(raw) == 32 else value


def resolve(graph: GraphClient, media_id: str, token: Secret) -> MediaInfo:
    """Ask Meta for the media's URL, type, hash and size."""
    try:
        data = graph.get_media_url(media_id, token)
    except AccessTokenError as exc:
        raise TokenRefused(f"GET /{media_id}: {exc}") from None
    except InvalidParameter as exc:
        # 100 with subcode 33: "Object with ID … does not exist": Meta forgot it.
        raise UnknownMedia(f"GET /{media_id}: {exc}") from None
    except GraphError as exc:
        if exc.retryable:
            raise DownloadFailed(f"GET /{media_id}: {exc}") from None
        raise UnknownMedia(f"GET /{media_id}: {exc}") from None
    if not data.get("url") or not data.get("sha256"):
        raise DownloadFailed(f"GET /{media_id} answered without a url or sha256")
    size = data.get("file_size")
    return MediaInfo(
        url=str(data["url"]),
        mime_type=str(data.get("mime_type") or "application/octet-stream"),
        sha256=_hex_digest(str(data["sha256"])),
        file_size=int(size) if size is not None else None,
    )


class CheckedBody:
    """A download read in pieces, counted and hashed; its last read checks size and hash.

    The blob store reads it to the end: a body that runs over the limit, ends short, or
    hashes wrong raises from read(), before the store makes the blob visible.
    """

    def __init__(self, response: requests.Response, info: MediaInfo, limit: int):
        self._chunks = response.iter_content(READ_BYTES)
        self._info, self._limit = info, limit
        self._buffer = b""
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        """Return up to `size` bytes (all that is left with -1)."""
        while size < 0 or len(self._buffer) < size:
            chunk = self._next()
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _next(self) -> bytes | None:
        try:
            chunk = next(self._chunks, None)
        except (requests.RequestException, OSError) as exc:
            raise Incomplete(f"download cut short after {self.size} bytes ({exc})") from None
        if chunk is None:
            self._finish()
            return None
        self.size += len(chunk)
        if self.size > self._limit:
            raise TooLarge(f"more than the {self._limit} bytes allowed")
        self.digest.update(chunk)
        return chunk

    def _finish(self) -> None:
        expected = self._info.file_size
        if expected is not None and self.size < expected:
            raise Incomplete(f"download ended at {self.size} of {expected} bytes")
        if self.digest.hexdigest() != self._info.sha256:
            got, said = self.digest.hexdigest(), self._info.sha256
            raise HashMismatch(f"sha256 of the {self.size} bytes is {got}, Meta's is {said}")


@contextmanager
def download(
    session: requests.Session, info: MediaInfo, token: Secret, limit: int
) -> Iterator[CheckedBody]:
    """Open the media URL with the bearer token; yield its body, checked as it is read."""
    if info.file_size is not None and info.file_size > limit:
        raise TooLarge(f"Meta says {info.file_size} bytes, over the limit of {limit}")
    try:
        response = session.get(
            info.url,
            headers={"Authorization": f"Bearer {token.reveal()}"},
            stream=True,
            timeout=TIMEOUT,
        )
    except requests.RequestException as exc:
        # `from None`: the exception's text holds the URL.
        raise DownloadFailed(f"media download: {type(exc).__name__}") from None
    with response:
        if response.status_code in (401, 403):
            raise TokenRefused(f"media download answered HTTP {response.status_code}")
        if response.status_code == 404:
            raise UrlExpired("media URL answered 404: expired")
        if response.status_code != 200:
            raise DownloadFailed(f"media download answered HTTP {response.status_code}")
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > limit:
            raise TooLarge(f"Content-Length {length} is over the limit of {limit}")
        yield CheckedBody(response, info, limit)
