"""Images and audio as run inputs: read from where they are, checked, sent as bytes.

An `image` or `audio` input is one of:
    s3://bucket/key          read with the function's role
    https://host/path        fetched without credentials, never from the function's own
                             network (below)
    data:image/png;base64,.. or plain base64
    a file path              the CLI only (`hf-run-job run --image photo.jpg`)

The bytes must be within HF_MEDIA_MAX_BYTES (checked before they are read whole), of a
format the API reads (known by its magic numbers, never by a name), and whole (a PNG that
stops before its end is refused here, not by the model).

A URL is fetched only from a public address: the host is resolved here, every address it
has must be global (not loopback, private, link-local such as the instance metadata
service, or reserved), and the connection goes to that checked address (a second lookup
cannot change it). Each redirect is checked again, at most `MAX_REDIRECTS` of them.
Inside Lambda the Runtime API listens on 127.0.0.1: nothing an event names reaches it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import re
import socket
import struct
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urljoin

import httpx

from function.client import Deadline, _ssl_context
from function.errors import InputError, MediaFetchError
from function.settings import MIB, Settings
from function.threads import bounded

MAX_REDIRECTS = 3
KINDS = ("image", "audio")

# (offset, magic bytes, content type): the formats hf-inference's image and audio
# pipelines read (PIL and ffmpeg).
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (8, b"WEBP", "image/webp"),
    (0, b"BM", "image/bmp"),  # with its reserved zeros: see `sniff`
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (8, b"WAVE", "audio/wav"),
    (0, b"fLaC", "audio/flac"),
    (0, b"OggS", "audio/ogg"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"\xff\xfb", "audio/mpeg"),
    (0, b"\xff\xf3", "audio/mpeg"),
    (0, b"\xff\xf2", "audio/mpeg"),
    (4, b"ftypM4A", "audio/mp4"),
    (0, b"\x1a\x45\xdf\xa3", "audio/webm"),
)
_BASE64 = re.compile(rb"[A-Za-z0-9+/_-]*={0,2}")
_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^,;]*)*),", re.ASCII)


class Media(NamedTuple):
    """An input's bytes, their content type (from the bytes), and where they came from."""

    data: bytes
    content_type: str
    source: str

    def as_base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")


class Picture(NamedTuple):
    """An image a run made (text-to-image): stored beside the run records, and the run's
    result says where (`stored`)."""

    data: bytes
    content_type: str
    width: int | None
    height: int | None

    async def stored(self, settings: Settings, deadline: Deadline) -> dict[str, Any]:
        from function.runs import store_image

        uri = await store_image(settings, self.data, self.content_type, deadline)
        return {
            "image": uri,
            "content_type": self.content_type,
            "bytes": len(self.data),
            "width": self.width,
            "height": self.height,
        }


def dimensions(data: bytes, content_type: str) -> tuple[int | None, int | None]:
    """Width and height from the image's header (PNG, JPEG, GIF, WebP), else None."""
    try:
        if content_type == "image/png":
            return struct.unpack(">II", data[16:24])
        if content_type == "image/gif":
            return struct.unpack("<HH", data[6:10])
        if content_type == "image/webp" and data[12:16] == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(
                data[27:30], "little"
            )
        if content_type == "image/jpeg":
            at = 2
            while at + 9 < len(data):
                if data[at] != 0xFF:
                    break
                marker, length = data[at + 1], struct.unpack(">H", data[at + 2 : at + 4])[0]
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    height, width = struct.unpack(">HH", data[at + 5 : at + 9])
                    return width, height
                at += 2 + length
    except struct.error:
        pass
    return None, None


def sniff(data: bytes) -> str | None:
    """The content type the bytes' magic numbers say, if they are a format the API reads.
    Signatures that text could start with ("BMW recalls", "ID3 tags", "OggS") are held to
    the bytes that follow them in the format too."""
    for offset, magic, content_type in _SIGNATURES:
        if data[offset : offset + len(magic)] != magic:
            continue
        if content_type in ("image/webp", "audio/wav") and data[:4] != b"RIFF":
            continue
        if content_type == "image/bmp" and data[6:10] != b"\x00\x00\x00\x00":
            continue
        if magic == b"ID3" and data[3:5] not in (b"\x02\x00", b"\x03\x00", b"\x04\x00"):
            continue
        if magic == b"OggS" and data[4:5] != b"\x00":
            continue
        return content_type
    return None


def _incomplete(data: bytes, content_type: str) -> str | None:
    """Why the bytes stop before their format's end, if they do (the formats whose end is
    known from their structure)."""
    if content_type == "image/png" and not data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82"):
        return "the PNG stops before its end (no IEND chunk)"
    if content_type == "image/jpeg" and b"\xff\xd9" not in data[-64:]:
        return "the JPEG stops before its end (no end-of-image marker)"
    if content_type in ("audio/wav", "image/webp"):
        (size,) = struct.unpack("<I", data[4:8]) if len(data) >= 8 else (0,)
        if len(data) < size + 8 and size != 0xFFFFFFFF:  # streamed WAVs say 0xFFFFFFFF
            return f"the file stops at {len(data):,} bytes where its header says {size + 8:,}"
    return None


def checked(field: str, data: bytes, source: str, settings: Settings) -> Media:
    """The bytes as this field's media, or an InputError that names the field and says why."""
    if len(data) > settings.media_max_bytes:
        raise _too_large(field, len(data), settings)
    if not data:
        raise InputError(f"Invalid input: {field}: {source} is empty")
    content_type = sniff(data)
    if content_type is None:
        formats = sorted({t for _, _, t in _SIGNATURES if t.startswith(field)})
        raise InputError(
            f"Invalid input: {field}: {source} is not in a format the API reads (its first "
            f"bytes are {data[:8].hex(' ')}); expected one of {', '.join(formats)}"
        )
    if not content_type.startswith(f"{field}/"):
        raise InputError(
            f"Invalid input: {field}: {source} holds {content_type}, not {field}; give it as "
            f"{content_type.split('/')[0]}"
        )
    problem = _incomplete(data, content_type)
    if problem is not None:
        raise InputError(f"Invalid input: {field}: {source}: {problem}")
    return Media(data, content_type, source)


def _too_large(field: str, size: int | None, settings: Settings) -> InputError:
    """`size` None: the input was cut off past the limit, its size unknown."""
    return InputError(
        f"Invalid input: {field}: {'it' if size is None else _size(size)} is over the limit of "
        f"{_size(settings.media_max_bytes)} (HF_MEDIA_MAX_BYTES)"
    )


def _size(count: int) -> str:
    return f"{count / MIB:,.1f} MB" if count >= MIB else f"{count:,} bytes"


async def read_media(
    field: str, value: str, settings: Settings, deadline: Deadline, *, files: bool = False
) -> Media:
    """The `image` or `audio` input's bytes, from wherever `value` says (see the module)."""
    text = value.strip()
    lowered = text[:8].lower()
    if lowered.startswith("s3://"):
        uri = "s3://" + text[5:]  # the scheme in any case is S3's, never a local path
        return checked(field, await _from_s3(field, uri, settings, deadline), uri[:200], settings)
    if lowered.startswith(("https://", "http://")):
        data = await fetch(field, text, settings, deadline)
        return checked(field, data, _short_url(text), settings)
    if lowered.startswith("data:"):
        return checked(field, _from_data_url(field, text, settings), "the data: URL", settings)
    if files and len(text) < 4096 and not _looks_like_base64(text):
        if _exists(text):
            return checked(field, _from_file(field, Path(text), settings), text[:200], settings)
        if _looks_like_path(text):
            raise InputError(f"Invalid input: {field}: no such file: {text[:200]}")
    expected = "s3://bucket/key, an https:// URL, a data: URL, base64" + (
        " or a file path" if files else " (a file path from the CLI only)"
    )
    return checked(field, _from_base64(field, text, settings, expected), "the base64", settings)


async def _from_s3(field: str, uri: str, settings: Settings, deadline: Deadline) -> bytes:
    from function.storage import open_input, read_whole

    read = await open_input(uri, settings, deadline, field=field)
    body = await read_whole(read, settings.media_max_bytes)
    if body is None:
        raise _too_large(field, None, settings)
    return body


def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except (OSError, ValueError):  # a NUL byte, a name too long
        return False


def _looks_like_path(text: str) -> bool:
    """A name with a folder or an extension (`photo.jpg`, `./in/a`): base64 has no dots."""
    return "." in text or text.startswith(("/", "~"))


def _looks_like_base64(text: str) -> bool:
    return len(text) >= 64 and len(text) % 4 == 0 and "." not in text[-6:]


def _from_file(field: str, path: Path, settings: Settings) -> bytes:
    try:
        if not path.is_file():
            raise InputError(f"Invalid input: {field}: {path} is not a file")
        if path.stat().st_size > settings.media_max_bytes:
            raise _too_large(field, path.stat().st_size, settings)
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"Invalid input: {field}: cannot read {path} ({exc.strerror})") from None


def _from_data_url(field: str, text: str, settings: Settings) -> bytes:
    match = _DATA_URL.match(text)
    if match is None or ";base64" not in match["params"].lower():
        raise InputError(
            f"Invalid input: {field}: a data: URL must be base64, as data:image/png;base64,<data>"
        )
    return _from_base64(field, text[match.end() :], settings, "base64 after the comma")


def _from_base64(field: str, text: str, settings: Settings, expected: str) -> bytes:
    packed = "".join(text.split())
    if len(packed) * 3 // 4 > settings.media_max_bytes:
        raise _too_large(field, len(packed) * 3 // 4, settings)
    raw = packed.encode("ascii", "replace")
    if not packed or not _BASE64.fullmatch(raw):
        raise InputError(f"Invalid input: {field}: expected {expected}; this is none of them")
    try:
        if "-" in packed or "_" in packed:
            return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
        return base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"Invalid input: {field}: the base64 does not decode ({exc})") from None


# -- fetching a URL, from public addresses only ----------------------------------------------------


def _short_url(url: str) -> str:
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"[:200]


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_COMPATIBLE = ipaddress.ip_network("::/96")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")


def is_public(address: str) -> bool:
    """Whether an IP address is on the public internet. An IPv6 address that carries an
    IPv4 one (mapped, 6to4, NAT64, IPv4-compatible) is judged by that one too: in a VPC
    with NAT64, 64:ff9b::a00:5 is 10.0.0.5."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    judged: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _SITE_LOCAL:
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and (any(ip in n for n in _NAT64) or ip in _COMPATIBLE):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            judged = [embedded] if ip.ipv4_mapped else [ip, embedded]
    return all(a.is_global and not a.is_multicast for a in judged)


async def _address(field: str, host: str, port: int, settings: Settings, deadline: Deadline) -> str:
    """The checked address to connect to for `host`."""
    served = settings.media_test_hosts.get(host.lower())
    if served is not None:  # tests only: a public-looking name served on this machine
        return served
    try:  # a thread of its own, bounded by the deadline: a name server may never answer
        found = await bounded(
            lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), deadline
        )
    except TimeoutError:
        raise MediaFetchError(f"{field}: {host!r} did not resolve before the deadline") from None
    except (OSError, UnicodeError) as exc:
        raise MediaFetchError(f"{field}: cannot resolve {host!r} ({exc})") from None
    addresses = [str(info[4][0]) for info in found]
    refused = [a for a in addresses if not is_public(a)]
    if not addresses or refused:
        raise InputError(
            f"Invalid input: {field}: {host!r} resolves to {', '.join(refused or ['nothing'])}, "
            "not a public address; media is fetched from the public internet only"
        )
    return addresses[0]


async def fetch(field: str, url: str, settings: Settings, deadline: Deadline) -> bytes:
    """GET `url` (following up to MAX_REDIRECTS redirects, each checked), within the
    deadline and the size limit."""
    schemes = ("https", "http") if settings.media_allow_http else ("https",)
    async with httpx.AsyncClient(
        verify=_ssl_context(), trust_env=False, follow_redirects=False
    ) as http:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                parsed = httpx.URL(url)
            except httpx.InvalidURL as exc:
                raise InputError(f"Invalid input: {field}: not a usable URL ({exc})") from None
            if parsed.scheme not in schemes:
                raise InputError(
                    f"Invalid input: {field}: {parsed.scheme}:// URLs are not fetched; expected "
                    "https://" + (" or http://" if settings.media_allow_http else "")
                )
            if parsed.userinfo:
                raise InputError(
                    f"Invalid input: {field}: a URL with a user name or password is not fetched"
                )
            if not parsed.host:
                raise InputError(f"Invalid input: {field}: the URL has no host")
            address = await _address(field, parsed.host, parsed.port or 443, settings, deadline)
            try:
                answer = await _get(http, field, parsed, address, settings, deadline)
            except httpx.InvalidURL as exc:
                raise InputError(f"Invalid input: {field}: not a usable URL ({exc})") from None
            if isinstance(answer, bytes):
                return answer
            url = urljoin(str(parsed), answer)
    raise InputError(f"Invalid input: {field}: more than {MAX_REDIRECTS} redirects")


async def _get(
    http: httpx.AsyncClient,
    field: str,
    url: httpx.URL,
    address: str,
    settings: Settings,
    deadline: Deadline,
) -> bytes | str:
    """The body, or where a redirect points."""
    host_header = url.netloc.decode("ascii")
    target = url.copy_with(host=address)  # the checked address: no second lookup
    limit = settings.media_max_bytes
    short = _short_url(str(url))
    try:
        async with asyncio.timeout(min(deadline.remaining(), settings.request_timeout_s)):
            request = http.build_request(
                "GET",
                target,
                # As stored: a compressed answer would be inflated past the size limit in
                # one go (a 2 KB gzip bomb is gigabytes), so none is asked for or taken.
                headers={
                    "Host": host_header,
                    "Accept": "image/*, audio/*",
                    "Accept-Encoding": "identity",
                },
                extensions={"sni_hostname": url.host},
            )
            response = await http.send(request, stream=True)
            try:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise MediaFetchError(f"{field}: {short} redirects nowhere")
                    return location
                if not response.is_success:
                    raise MediaFetchError(f"{field}: {short} answered HTTP {response.status_code}")
                encoding = response.headers.get("content-encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise MediaFetchError(
                        f"{field}: {short} answered compressed ({encoding[:40]}) although it "
                        "was asked for the file as it is"
                    )
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise _too_large(field, int(declared), settings)
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > limit:
                        raise _too_large(field, len(body), settings)
                return bytes(body)
            finally:
                await response.aclose()
    except TimeoutError:
        raise MediaFetchError(f"{field}: {short} did not answer before the deadline") from None
    except httpx.HTTPError as exc:
        raise MediaFetchError(f"{field}: could not fetch {short} ({type(exc).__name__})") from None
