"""A partner file's bytes as delivered -> its checked text, or a rejection.

Checks, in order: gzip (a file named ``.gz`` is a readable gzip stream, decompressed once; a
gzip stream named ``.csv`` is rejected), not empty, not UTF-16, no NUL bytes, UTF-8, no other
control characters than tab, CR and LF. A UTF-8 byte order mark is tolerated and left out.
Each check reads the bytes as they are: none makes a copy of the file. A file of more than
``TEXT_PIECE`` bytes keeps its text as the checked UTF-8 bytes (``Utf8Text``), decoded a piece
at a time as it is read (``csv_reader``).
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator

from bdt_platform.feeds.rejections import MAX_EXAMPLES, reject

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
_BLANK_RE = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\n\r\x0b\x0c]*")  # a BOM, ASCII blanks
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0b, 0x0c, *range(0x0e, 0x20), 0x7f])
_CONTROL_BYTES_RE = re.compile(b"[" + re.escape(_CONTROL_BYTES) + b"]")
TEXT_PIECE = 1 << 20  # characters of a file's text given to a StringIO at a time


class Utf8Text:
    """A file's text held as its UTF-8 bytes (checked by ``decoded``; a leading byte order mark
    left out), decoded a piece at a time as it is read (``_text_lines``): a Python string of
    non-ASCII text takes two or four bytes a character, the whole of a big file at once."""

    def __init__(self, data: bytes, start: int = 0):
        self.data, self.start = data, start

    def pieces(self, size: int) -> Iterator[str]:
        """The text in pieces of about ``size`` bytes, each ending at a line break (``\n``,
        never inside a character) or at the end."""
        view = memoryview(self.data)
        for start, end in line_cuts(self.data, b"\n", size, self.start):
            yield str(view[start:end], "utf-8")

    def __str__(self) -> str:
        return str(memoryview(self.data)[self.start:], "utf-8")


def decode(data: bytes, filename: str) -> str:
    """Bytes as delivered -> text. Broken gzip, binary data, non-UTF-8 and empty files fail."""
    return str(decoded(data, filename))


def decoded(data: bytes, filename: str) -> str | Utf8Text:
    """``decode``, keeping the text of a file of more than ``TEXT_PIECE`` bytes as checked UTF-8
    bytes (``Utf8Text``). Each check reads the bytes as they are: none makes a copy of the file
    (a gzip file is decompressed once)."""
    if filename.endswith(".gz"):
        if not data.startswith(GZIP_MAGIC):
            raise reject("gzip_readable", "file is named .gz but is not gzip-compressed")
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise reject("gzip_readable", f"file is not readable gzip: {exc}") from None
    elif data.startswith(GZIP_MAGIC):
        raise reject("compression_matches_file_name",
                     "file is gzip-compressed but its name does not end in .csv.gz")
    if _BLANK_RE.fullmatch(data):  # (not ``data.strip()``: a copy of a big file)
        raise reject("file_not_empty", "file is empty (not even a header row)")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise reject("utf8_encoding", "file is UTF-16 encoded (it starts with a UTF-16 byte "
                     "order mark); the contract requires UTF-8")
    if b"\x00" in data:
        lines = [n for n, line in enumerate(data.split(b"\n"), start=1) if b"\x00" in line]
        offset = data.index(b"\x00")
        raise reject("text_not_binary",
                     f"file holds binary data: NUL bytes on {len(lines)} line(s), first at "
                     f"byte offset {offset}", count=len(lines),
                     examples=[{"line": line} for line in lines[:MAX_EXAMPLES]])
    start = len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0
    try:
        if len(data) - start <= TEXT_PIECE:  # a small file: decoded once, as one string
            text = str(memoryview(data)[start:], "utf-8")
        else:
            text = Utf8Text(data, start)
            for _ in text.pieces(TEXT_PIECE):
                pass
    except UnicodeDecodeError:
        bad = _undecodable_lines(data)
        first_line, first_byte = bad[0]
        raise reject("utf8_encoding",
                     f"{len(bad)} line(s) are not UTF-8, the first at line {first_line} "
                     f"(byte 0x{first_byte:02x}); is the file in Latin-1 or Windows-1252?",
                     count=len(bad),
                     examples=[{"line": line, "byte": f"0x{byte:02x}"}
                               for line, byte in bad[:MAX_EXAMPLES]]) from None
    # Control characters are ASCII: in UTF-8 their bytes mean nothing else.
    if _has_control_bytes(data):
        first = _CONTROL_BYTES_RE.search(data)
        lines = [n for n, line in enumerate(data.split(b"\n"), start=1)
                 if _CONTROL_BYTES_RE.search(line)]
        raise reject("text_not_binary",
                     f"file holds control characters on {len(lines)} line(s) (first: "
                     f"0x{first.group()[0]:02x} at line {lines[0]})", count=len(lines),
                     examples=[{"line": line} for line in lines[:MAX_EXAMPLES]])
    return text


def _has_control_bytes(data: bytes) -> bool:
    """Whether ``data`` holds a control character's byte (``_CONTROL_BYTES``). Deleting them
    from a copy of each ``TEXT_PIECE`` bytes and comparing lengths: about five times faster
    than a regular expression's search over the whole file (the search then finds where)."""
    view = memoryview(data)
    return any(len(piece.translate(None, _CONTROL_BYTES)) != len(piece)
               for piece in (bytes(view[start:start + TEXT_PIECE])
                             for start in range(0, len(data), TEXT_PIECE)))


def _undecodable_lines(data: bytes) -> list[tuple[int, int]]:
    """(line number, first bad byte) for every line that is not valid UTF-8."""
    bad = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad.append((number, line[exc.start]))
    return bad


def line_cuts(text: str | bytes, newline: str | bytes, size: int, start: int = 0
              ) -> Iterator[tuple[int, int]]:
    """``text`` from ``start`` on cut into pieces of at least ``size`` characters (or bytes),
    each ending just after a ``newline`` (or at the end): ``(start, end)`` of each."""
    while start < len(text):
        end = text.find(newline, start + size)
        end = len(text) if end < 0 else end + 1
        yield start, end
        start = end
