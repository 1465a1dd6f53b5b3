"""From a partner file's bytes to a validated, tokenized, typed table - or a clear rejection.

Steps: decode (gzip, UTF-8, BOM) -> read as text -> columns -> pandera contract -> typed Arrow
table with ``person_token`` instead of ``ssn`` and the partition columns. Each step that finds a
problem raises :class:`FileRejected` listing every failed rule with its column, count and up to
20 example rows (line numbers as in the file, identifiers masked). Rule names and descriptions
come from ``contracts`` (``FILE_RULES`` for the steps before pandera).

What is tolerated, because a partner would expect it: a UTF-8 BOM (stripped), CRLF or CR line
endings, blank lines (anywhere, including trailing ones; a line holding only spaces counts as
blank), header names padded with spaces, columns in any order. Values are never trimmed or
changed. A header-only file is a valid file with zero rows.

PII in reports: example rows never show a full SSN. The ``ssn`` and ``recipient_key`` columns
(where an SSN would sit) show only their last four digits unless they hold a well-formed person
token; in every other value any SSN-shaped text or run of nine or more digits is masked the same
way (a 10-digit phone shows as ``******3095``). Unexpected header names are masked too.
"""

from __future__ import annotations

import array
import csv
import datetime as dt
import functools
import gzip
import io
import itertools
import os
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pandera.errors
import pyarrow as pa

from bdt_platform.feeds import contracts, plain_csv
from bdt_platform.feeds.filenames import partner_of
from bdt_platform.feeds.specs import ALL_SPECS, FeedSpec
from bdt_platform.pii import is_token, person_tokens
from bdt_platform.storage.staged_rows import SpilledRows, SpillWriter, StagedRows

MAX_EXAMPLES = 20
# Columns where a raw SSN would sit: every digit but the last four is masked, whatever the shape.
PII_COLUMNS = ("ssn", "recipient_key")
LINE_NUMBERS = "line_numbers"  # frame.attrs key: the file line each row starts on
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
_BLANK_RE = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\n\r\x0b\x0c]*")  # a BOM, ASCII blanks
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0b, 0x0c, *range(0x0e, 0x20), 0x7f])
_CONTROL_BYTES_RE = re.compile(b"[" + re.escape(_CONTROL_BYTES) + b"]")
_SSN_SHAPED_RE = re.compile(r"\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4}|\d{9,}")
MAX_TEXT = 200  # longest masked value quoted in an example
# A file's records become Arrow columns this many at a time: a big file is never all Python
# objects at once (a record of ten fields as Python strings takes ~10x its bytes).
READ_BATCH_ROWS = 16_384
TEXT_PIECE = 1 << 20  # characters of a file's text given to a StringIO at a time
# A file of more records than this is validated, tokenized and typed this many records at a
# time, its typed rows spilled to local disk as they are made (``staged_rows``): the memory a
# run needs then grows with a slice and the file's text, not with all of its rows as pandas
# and Arrow objects. Smaller files are validated together, a chunk of files per pandera call.
SLICE_ROWS = 16_384


@dataclass
class ContractFailure:
    """One broken rule: which rule, on which column, how many rows, and examples."""

    rule: str
    column: str | None
    count: int
    message: str = ""
    examples: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


class LineNumbers:
    """The file line each row of a frame starts on (kept in ``frame.attrs``).

    Immutable and never deep-copied: pandas copies ``attrs`` on every operation, and copying a
    list of a million line numbers each time would cost more than the validation itself."""

    __slots__ = ("_lines",)

    def __init__(self, lines: Sequence[int]):
        self._lines = lines if isinstance(lines, array.array) else array.array("q", lines)

    def __deepcopy__(self, memo) -> LineNumbers:
        return self

    def __len__(self) -> int:
        return len(self._lines)

    def __getitem__(self, index: int) -> int:
        return self._lines[index]


class FileRejected(Exception):
    """A file broke the contract; nothing from it may be loaded."""

    def __init__(self, failures: list[ContractFailure]):
        self.failures = failures
        super().__init__(summarize(failures))

    def __reduce__(self):
        # Sent back from a worker process (``prepare_files``) with its failures intact.
        return (FileRejected, (self.failures,))

    @property
    def rules(self) -> list[str]:
        return [failure.rule for failure in self.failures]


# What a file-level rule's count counts (rules not listed here count rows).
_COUNTED = {"utf8_encoding": "line", "text_not_binary": "line", "csv_well_formed": None,
            "gzip_readable": None, "compression_matches_file_name": None, "file_not_empty": None,
            "header_row_present": None, "required_columns_present": "column",
            "no_unexpected_columns": "column", "unique_column_names": "column"}


def summarize(failures: list[ContractFailure]) -> str:
    """One line naming the first three failed rules, their columns and counts."""
    parts = []
    for failure in failures[:3]:
        where = f" on {failure.column}" if failure.column else ""
        unit = _COUNTED.get(failure.rule, "row")
        count = f" ({failure.count} {unit}{'s' if failure.count != 1 else ''})" if unit else ""
        parts.append(f"{failure.rule}{where}{count}")
    more = f" and {len(failures) - 3} more" if len(failures) > 3 else ""
    return "; ".join(parts) + more


# ---------------------------------------------------------------------------------------------
# Masking: what example rows may show

def _keep_last_four_digits(text: str) -> str:
    total = sum(ch.isdigit() for ch in text)
    seen, out = 0, []
    for ch in text:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen > total - 4 else "*")
        else:
            out.append(ch)
    return "".join(out)


def mask_value(value: object, column: str | None = None) -> object:
    """A value as reason files may show it: SSN-like digits masked, long text shortened."""
    if value is None or not isinstance(value, str):
        return value
    if is_token(value):  # a person token is what should be there; it reveals nothing
        return value
    if column in PII_COLUMNS:
        masked = _keep_last_four_digits(value)
    else:
        masked = _SSN_SHAPED_RE.sub(lambda m: _keep_last_four_digits(m.group()), value)
    return masked if len(masked) <= MAX_TEXT else masked[:MAX_TEXT] + "..."


def _masked_names(names: list[str]) -> str:
    return ", ".join(repr(mask_value(name)) for name in names)


# ---------------------------------------------------------------------------------------------
# Before pandera: bytes -> text -> CSV records -> a frame of strings

def _reject(rule: str, message: str, column: str | None = None, count: int = 1,
            examples: list[dict] | None = None) -> FileRejected:
    return FileRejected([ContractFailure(rule, column, count, message, examples or [])])


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
        for start, end in _line_cuts(self.data, b"\n", size, self.start):
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
            raise _reject("gzip_readable", "file is named .gz but is not gzip-compressed")
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise _reject("gzip_readable", f"file is not readable gzip: {exc}") from None
    elif data.startswith(GZIP_MAGIC):
        raise _reject("compression_matches_file_name",
                      "file is gzip-compressed but its name does not end in .csv.gz")
    if _BLANK_RE.fullmatch(data):  # (not ``data.strip()``: a copy of a big file)
        raise _reject("file_not_empty", "file is empty (not even a header row)")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _reject("utf8_encoding", "file is UTF-16 encoded (it starts with a UTF-16 byte "
                      "order mark); the contract requires UTF-8")
    if b"\x00" in data:
        lines = [n for n, line in enumerate(data.split(b"\n"), start=1) if b"\x00" in line]
        offset = data.index(b"\x00")
        raise _reject("text_not_binary",
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
        raise _reject("utf8_encoding",
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
        raise _reject("text_not_binary",
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


def _is_blank(record: list[str]) -> bool:
    return not record or (len(record) == 1 and not record[0].strip())


def _records(lines: Iterable[str], first_line: int = 1) -> Iterator[tuple[int, list[str]]]:
    """CSV records of ``lines`` (the text from file line ``first_line`` on) with the file line
    each starts on; blank lines skipped."""
    reader = csv.reader(lines, strict=True)
    while True:
        start = first_line + reader.line_num
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _reject("csv_well_formed",
                          f"CSV is malformed in the record starting at line {start}: {exc} "
                          "(an unclosed quote, or text after a closing quote?)",
                          examples=[{"line": start}]) from None
        if not _is_blank(record):
            yield start, record


def _text_lines(text: str | Utf8Text, first_line: int = 1) -> Iterator[str]:
    """The lines of ``text`` from line ``first_line`` on, as the csv module reads a file (split
    at ``\n``, ``\r\n`` or ``\r``, each kept). A ``StringIO`` holds its text four bytes per
    character, so the text is read about ``TEXT_PIECE`` characters (or bytes, of a
    ``Utf8Text``) at a time, each piece ending at a ``\n``; a quoted field may still run from
    one piece into the next."""
    skip = first_line - 1
    for text_piece in _pieces(text):
        piece = io.StringIO(text_piece, newline="")
        text_piece = None
        if skip:
            skipped = sum(1 for _ in itertools.islice(piece, skip))
            skip -= skipped
            if skip:
                continue
        yield from piece


def _pieces(text: str | Utf8Text) -> Iterator[str]:
    if isinstance(text, Utf8Text):
        yield from text.pieces(TEXT_PIECE)
        return
    for start, end in _line_cuts(text, "\n", TEXT_PIECE):
        yield text[start:end]


def _line_cuts(text: str | bytes, newline: str | bytes, size: int, start: int = 0
               ) -> Iterator[tuple[int, int]]:
    """``text`` from ``start`` on cut into pieces of at least ``size`` characters (or bytes),
    each ending just after a ``newline`` (or at the end): ``(start, end)`` of each."""
    while start < len(text):
        end = text.find(newline, start + size)
        end = len(text) if end < 0 else end + 1
        yield start, end
        start = end


def _record_batches(text: str | Utf8Text) -> Iterator[tuple[list[list[str]], Sequence[int]]]:
    """``_records`` in batches of at most ``READ_BATCH_ROWS`` records, each as two lists
    (records, the line each starts on), so that a big file is never all Python objects at once.

    A batch is read at once when each of its records is one line of its own (the csv module
    then counts as many lines as records: record ``i`` is on line ``i + 1``): ~35% less time
    than record by record. From the first batch where that fails (a quoted field holding a line
    break, or malformed CSV) the rest is read record by record, which also says where the CSV
    is malformed."""
    reader = csv.reader(_text_lines(text), strict=True)
    read = 0  # records read at once so far, each one line: also the lines read
    while True:
        try:
            rows = list(itertools.islice(reader, READ_BATCH_ROWS))
        except csv.Error:
            break
        if reader.line_num != read + len(rows):
            break
        if not rows:
            return
        first, read = read + 1, read + len(rows)
        if min(map(len, rows)) > 1:  # no record is blank (blank: no field, or one blank)
            yield rows, range(first, first + len(rows))
        else:
            kept = [(line, row) for line, row in enumerate(rows, start=first)
                    if not _is_blank(row)]
            yield [row for _, row in kept], [line for line, _ in kept]
    records = _records(_text_lines(text, read + 1), read + 1)
    while batch := list(itertools.islice(records, READ_BATCH_ROWS)):
        yield [record for _, record in batch], [line for line, _ in batch]


def read_text_frame(text: str, spec: FeedSpec) -> pd.DataFrame:
    """CSV text -> a DataFrame of strings with exactly the contract's columns (in contract
    order). ``frame.attrs["line_numbers"]`` holds the file line each row starts on.

    Each column is Arrow-backed text (``pd.ArrowDtype(pa.string())``): the contract's rules
    read it as an Arrow array without converting (``contracts._text``), pandera's null check is
    a count, and the typed table takes the arrays as they are, instead of converting Python
    ``str`` objects to Arrow once per rule and again for the table."""
    return text_frame(*read_text_columns(text, spec))


def text_frame(columns: pa.Table, line_numbers: list[int] | None = None) -> pd.DataFrame:
    """A table of text columns as the DataFrame the contract validates (Arrow-backed text, the
    same buffers); with ``line_numbers``, those of its rows (``frame.attrs``)."""
    frame = pd.DataFrame({name: pd.arrays.ArrowExtensionArray(columns.column(name))
                          for name in columns.column_names})
    if line_numbers is not None:
        frame.attrs[LINE_NUMBERS] = LineNumbers(line_numbers)
    return frame


def read_text_columns(text: str | Utf8Text, spec: FeedSpec
                      ) -> tuple[pa.Table, Sequence[int]]:
    """CSV text -> ``read_text_frame``'s columns as an Arrow table of strings, and the line each
    row starts on. A chunk's files are read this way and validated as one frame
    (``prepare_files``): one DataFrame per chunk instead of one per file and two concatenations,
    a third of a worker's time."""
    return _joined_batches(list(column_batches(text, spec)))


def column_batches(text: str | Utf8Text, spec: FeedSpec
                   ) -> Iterator[tuple[pa.Table, Sequence[int]]]:
    """CSV text -> its records ``READ_BATCH_ROWS`` at a time, each batch as a table of the
    contract's columns (Arrow strings, in contract order) and the line each row starts on.

    The header is checked before the first batch; a row without the header's number of fields
    ends the batches (the rest is only counted) and, once the text is read, rejects the file
    (``field_count_matches_header``, naming every such row). A batch may hold no rows."""
    batches = _record_batches(text)
    for rows, lines in batches:
        if rows:
            break
    else:
        raise _reject("file_not_empty", "file holds no header row")
    header, rows, lines = [name.strip() for name in rows[0]], rows[1:], lines[1:]
    expected = spec.input_columns
    if not set(header) & set(expected):
        raise _reject("header_row_present",
                      f"the first row names none of the {len(expected)} columns of the "
                      f"{spec.name} contract: is the header row missing, or is this another feed's "
                      "file? Expected: "
                      f"{', '.join(expected)}")
    missing = [c for c in expected if c not in header]
    unexpected = [c for c in header if c not in expected]
    duplicated = sorted({c for c in header if header.count(c) > 1 and c in expected})
    failures = []
    if missing:
        failures.append(ContractFailure(
            "required_columns_present", ",".join(missing), len(missing),
            f"missing column(s): {', '.join(missing)}"))
    if unexpected:
        failures.append(ContractFailure(
            "no_unexpected_columns", ",".join(str(mask_value(c)) for c in unexpected),
            len(unexpected), f"unexpected column(s): {_masked_names(unexpected)}"))
    if duplicated:
        failures.append(ContractFailure(
            "unique_column_names", ",".join(duplicated), len(duplicated),
            f"column(s) named more than once: {', '.join(duplicated)}"))
    if failures:
        raise FileRejected(failures)
    # Each batch's records transposed into columns, each then one Arrow string array.
    position = {name: number for number, name in enumerate(header)}
    empty = pa.array([], type=pa.string())
    bad: list[tuple[int, int]] = []
    while True:
        if rows and set(map(len, rows)) != {len(header)}:
            bad.extend((line, len(row)) for line, row in zip(lines, rows)
                       if len(row) != len(header))
        if not bad:  # once a row is bad the file is rejected: only count the others
            values = list(zip(*rows)) if rows else None
            arrays = [pa.array(values[position[name]], type=pa.string()) if values else empty
                      for name in expected]
            values = None
            yield pa.table(arrays, names=list(expected)), lines
        rows = lines = None
        batch = next(batches, None)
        if batch is None:
            break
        rows, lines = batch
        del batch
    if bad:
        raise _reject("field_count_matches_header",
                      f"{len(bad)} row(s) do not have the header's {len(header)} fields "
                      f"(first at line {bad[0][0]}); an unquoted comma, or a lost field?",
                      count=len(bad),
                      examples=[{"line": line, "fields": count, "expected": len(header)}
                                for line, count in bad[:MAX_EXAMPLES]])


# ---------------------------------------------------------------------------------------------
# The pandera contract

def validate(frame: pd.DataFrame, spec: FeedSpec, state: str, month: dt.date) -> None:
    """Run the feed's pandera contract; raise :class:`FileRejected` with every failed rule."""
    checked = frame.assign(file_state=state, file_month=month.isoformat())
    try:
        spec.contract.validate(checked, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        raise FileRejected(_failures_from_pandera(errors.failure_cases, frame, checked, spec)
                           ) from None


def validate_many(frames: list[tuple[pd.DataFrame, str, dt.date]], spec: FeedSpec
                  ) -> list[FileRejected | None]:
    """Validate many files' frames (each with its state and month) in one pandera call.

    Every rule is per row or per file (``file_state`` x ``file_month``), so a row breaks a rule
    in the combined frame exactly when it breaks it in its own file. Pandera's fixed cost per
    call (~50-100 ms) is paid once instead of once per file. The files the combined call
    implicates are validated again on their own, so a rejection reads exactly as if the file had
    been validated alone (its lines, its rows). Returns, per input, None or the rejection."""
    if len(frames) <= 1:
        return [_rejection(frame, spec, state, month) for frame, state, month in frames]
    combined = pd.concat([frame for frame, _, _ in frames], ignore_index=True)
    combined.attrs.clear()
    return _validate_combined(combined, [(len(frame), state, month)
                                         for frame, state, month in frames],
                              lambda number: frames[number][0], spec)


def _validate_combined(combined: pd.DataFrame, files: list[tuple[int, str, dt.date]],
                       file_frame: Callable[[int], pd.DataFrame], spec: FeedSpec
                       ) -> list[FileRejected | None]:
    """``validate_many`` for files already in one frame (their rows in order), each given as
    ``(rows, state, month)``; ``file_frame(n)`` is the n-th file's own frame, validated alone
    when the combined call implicates it. ``combined`` gains the file columns."""
    lengths = [rows for rows, _, _ in files]
    offsets = np.cumsum([0] + lengths)
    combined["file_state"] = np.repeat(np.array([state for _, state, _ in files], dtype=object),
                                       lengths)
    combined["file_month"] = np.repeat(
        np.array([month.isoformat() for _, _, month in files], dtype=object), lengths)
    try:
        spec.contract.validate(combined, lazy=True)
        return [None] * len(files)
    except pandera.errors.SchemaErrors as errors:
        suspects = _implicated_files(errors.failure_cases, combined, offsets,
                                     spec.contract.to_schema())
    return [_rejection(file_frame(number), spec, state, month) if number in suspects else None
            for number, (_, state, month) in enumerate(files)]


def warm_up() -> None:
    """Run every feed's contract once on an empty frame. Pandera imports its validation backends
    (and hypothesis's strategies, when hypothesis is installed) on its first ``validate``: ~0.3 s
    of CPU. The workers' fork server calls this once (``worker_start``), so that the workers
    forked from it do not each pay it on their first chunk."""
    for spec in ALL_SPECS.values():
        empty = pd.DataFrame({name: pd.arrays.ArrowExtensionArray(pa.array([], type=pa.string()))
                              for name in spec.input_columns})
        _rejection(empty, spec, "", dt.date(2000, 1, 1))


def _rejection(frame: pd.DataFrame, spec: FeedSpec, state: str, month: dt.date
               ) -> FileRejected | None:
    try:
        validate(frame, spec, state, month)
    except FileRejected as rejected:
        return rejected
    return None


def _implicated_files(cases: pd.DataFrame, combined: pd.DataFrame, offsets: np.ndarray,
                      schema) -> set[int]:
    """Which files (by position) hold a failing row; every file when a failure names no row."""
    rows: set[int] = set()
    everyone = set(range(len(offsets) - 1))
    keys = ["schema_context", "column", "check_number", "check"]
    for (context, column, number, check), group in cases.groupby(keys, sort=False, dropna=False):
        name = _rule_for(context, column, number, check, schema).name
        if str(context) == "DataFrameSchema" and name in contracts.FRAME_RULE_TESTS:
            # Pandera samples a cross-field rule's failures: re-run it for every failing row.
            rows.update(_failing_rows(name, combined))
            continue
        found = pd.to_numeric(group["index"], errors="coerce")
        if found.isna().any():
            return everyone  # a column- or frame-wide failure: look at each file alone
        rows.update(int(i) for i in found.unique())
    if not rows:
        return everyone
    return {int(i) for i in np.searchsorted(offsets, sorted(rows), side="right") - 1}


def _rule_for(context: object, column: object, number: object, check: object,
              schema) -> contracts.Rule:
    """Which contract rule a pandera failure belongs to (found by the check's position)."""
    column = column if isinstance(column, str) else None
    try:
        if str(context) == "Column" and column is not None:
            found = schema.columns[column].checks[int(number)]
            return contracts.Rule(found.name, column, found.error)
        if str(context) == "DataFrameSchema":
            found = schema.checks[int(number)]
            return contracts.Rule(found.name, contracts.RULE_COLUMNS.get(found.name), found.error)
    except (KeyError, IndexError, TypeError, ValueError):
        pass
    return contracts.Rule(str(check), column, str(check))  # not one of ours (schema-level)


def _failing_rows(rule: str, checked: pd.DataFrame) -> list[int]:
    """Every failing row of a cross-field rule (pandera only samples them, see contracts)."""
    keeps = contracts.FRAME_RULE_TESTS[rule](checked)
    return [int(i) for i in keeps.index[~keeps]]


def _failures_from_pandera(cases: pd.DataFrame, frame: pd.DataFrame, checked: pd.DataFrame,
                           spec: FeedSpec) -> list[ContractFailure]:
    schema = spec.contract.to_schema()
    order = {rule.name: position for position, rule in enumerate(contracts.rules(spec.contract))}
    lines = frame.attrs.get(LINE_NUMBERS)
    if lines is None or len(lines) != len(frame):
        lines = range(2, len(frame) + 2)  # a frame not read from a file: header + row number
    # A cross-field rule is reported once per column of each failing row: fold those together.
    grouped: dict[tuple[str, str | None], tuple[contracts.Rule, set[int]]] = {}
    keys = ["schema_context", "column", "check_number", "check"]
    for (context, column, number, check), group in cases.groupby(keys, sort=False, dropna=False):
        rule = _rule_for(context, column, number, check, schema)
        key = (rule.name, rule.column)
        if key in grouped and rule.name in contracts.FRAME_RULE_TESTS:
            continue  # the same cross-field rule, reported on another column
        _, indexes = grouped.setdefault(key, (rule, set()))
        if str(context) == "DataFrameSchema" and rule.name in contracts.FRAME_RULE_TESTS:
            indexes.update(_failing_rows(rule.name, checked))
        else:
            found = pd.to_numeric(group["index"], errors="coerce").dropna()
            indexes.update(int(i) for i in found.unique())
    failures = []
    for (name, column), (rule, found) in grouped.items():
        indexes = sorted(found)
        count = len(indexes) or 1
        examples = []
        for index in indexes[:MAX_EXAMPLES]:
            row = frame.loc[index]
            examples.append({
                "line": lines[index],
                "value": mask_value(row[column], column) if column in row.index else None,
                "row": {k: mask_value(v, k) for k, v in row.items()},
            })
        message = f"{count} row(s) break {name}: {rule.description}"
        failures.append(ContractFailure(name, column, count, message, examples))
    failures.sort(key=lambda f: order.get(f.rule, len(order)))
    return failures


# ---------------------------------------------------------------------------------------------
# After validation: the typed raw table

def to_table(frame: pd.DataFrame, spec: FeedSpec, *, state: str, month: dt.date,
             source_file: str, pii_key: str, partner=None) -> pa.Table:
    """Validated text frame -> the typed raw table (SSNs replaced by person tokens).
    ``state``, ``month`` and ``source_file`` are one value for every row, or one per row (a
    frame holding several files; then ``partner`` too, else it is read from the file name).
    ``frame`` is left as it is."""
    columns: dict[str, pd.Series | np.ndarray | list] = {name: frame[name]
                                                         for name in frame.columns}
    for column in spec.optional:
        if column in columns and column != "ssn":
            columns[column] = columns[column].where(columns[column] != "", None)
    if spec.tokenize:
        columns["person_token"] = person_tokens(frame, pii_key)
    columns["state"], columns["month"], columns["_source_file"] = state, month, source_file
    if spec.from_partners:
        columns["_partner"] = partner_of(source_file) if partner is None else partner
    arrays = [_typed(columns[field.name], field.type, len(frame)) for field in spec.arrow_schema]
    return pa.Table.from_arrays(arrays, schema=spec.arrow_schema)


def to_table_many(files: list[tuple[pd.DataFrame, str, dt.date, str]], spec: FeedSpec, *,
                  pii_key: str) -> pa.Table:
    """Several validated frames, each ``(frame, state, month, source_file)``, -> one typed raw
    table holding their rows in order (one tokenize and one Arrow build for all of them)."""
    combined = (files[0][0] if len(files) == 1
                else pd.concat([frame for frame, *_ in files], ignore_index=True))
    return _to_table_combined(combined, [(len(frame), *rest) for frame, *rest in files], spec,
                              pii_key)


def _to_table_combined(combined: pd.DataFrame, files: list[tuple[int, str, dt.date, str]],
                       spec: FeedSpec, pii_key: str) -> pa.Table:
    """``to_table_many`` for files already in one frame, each ``(rows, state, month, source)``."""
    lengths = [rows for rows, *_ in files]

    def per_row(position: int) -> np.ndarray:
        return np.repeat(np.array([item[position] for item in files], dtype=object), lengths)

    partners = np.repeat(np.array([partner_of(item[3]) for item in files], dtype=object),
                         lengths) if spec.from_partners else None
    return to_table(combined, spec, pii_key=pii_key, state=per_row(1), month=per_row(2),
                    source_file=per_row(3), partner=partners)


def _typed(values: pd.Series | np.ndarray | list | object, arrow_type: pa.DataType,
           length: int) -> pa.Array:
    """A column (validated text, tokens, or the partition's dates and names, given per row or
    as one value for all ``length`` rows) as an Arrow array of ``arrow_type``; empty or missing
    values become nulls."""
    if not isinstance(values, (pd.Series, np.ndarray, list)):
        return pa.array([values], type=arrow_type).take(np.zeros(length, dtype=np.int64))
    if not isinstance(values, pd.Series):
        values = pd.Series(values, dtype=object)
    if arrow_type == pa.string() and isinstance(values.dtype, pd.ArrowDtype):
        return contracts.arrow_array(values).cast(arrow_type)
    if arrow_type == pa.date32():
        if len(values) and isinstance(values.iloc[0], dt.date):
            return pa.array(values.to_numpy(dtype=object), type=arrow_type)
        days = contracts.parse_dates(values)
        return pa.array(days, type=arrow_type, mask=np.isnat(days))
    if pa.types.is_timestamp(arrow_type):
        utc = _in_datetime_range(contracts.parse_timestamps(values).utc)
        return pa.array(utc, type=arrow_type, mask=np.isnat(utc))
    if arrow_type == pa.int64():
        return pa.array(pd.to_numeric(values), type=arrow_type)
    if arrow_type == pa.float64():
        return pa.array(pd.to_numeric(values), type=arrow_type)
    return pa.array(values.to_numpy(dtype=object), type=arrow_type, from_pandas=True)


def _in_datetime_range(utc: np.ndarray) -> np.ndarray:
    """``utc``, if every instant lies in years 1..9999; OverflowError as from
    ``datetime.astimezone`` otherwise (``0001-01-01T00:00+01:00`` is valid text whose UTC
    instant falls in year 0; the contract's ``*_is_timestamp`` rule rejects such files)."""
    if ((utc < contracts.FIRST_INSTANT) | (utc >= contracts.INSTANT_AFTER)).any():
        raise OverflowError("date value out of range")
    return utc


# ---------------------------------------------------------------------------------------------
# A chunk of files, from bytes to a verdict per file and one table: what a worker process runs

@dataclass
class PreparedFiles:
    """A chunk of files as ``prepare_files`` leaves them: per file (in order) None when it met
    the contract or its rejection; the accepted files' rows as one typed table (in order),
    except a big file's, which are spilled to local disk (``spilled``, by the file's position);
    each accepted file's row count; the seconds it took, and the process that did it."""

    verdicts: list[FileRejected | None]
    table: pa.Table | None
    rows: list[int]
    seconds: float
    process: int
    spilled: dict[int, SpilledRows] = field(default_factory=dict)

    def file(self, position: int) -> tuple[FileRejected | None, pa.Table | SpilledRows | None,
                                            int]:
        """The ``position``-th file's share: its rejection, or None, its rows (a zero-copy
        slice of ``table``, or its spilled rows) and their count."""
        if self.verdicts[position] is not None:
            return self.verdicts[position], None, 0
        if position in self.spilled:
            return None, self.spilled[position], self.spilled[position].num_rows
        offset, rows = self._in_table[position]
        return None, self.table.slice(offset, rows), rows

    @property
    def accepted(self) -> list[int]:
        """The accepted files' positions, in order."""
        return [number for number, verdict in enumerate(self.verdicts) if verdict is None]

    @functools.cached_property
    def _in_table(self) -> dict[int, tuple[int, int]]:
        """Per accepted file whose rows are in ``table`` (by position): where they start in
        it, and how many they are."""
        places, offset = {}, 0
        for position, rows in zip(self.accepted, self.rows):
            if position not in self.spilled:
                places[position] = (offset, rows)
                offset += rows
        return places

    def staged(self) -> StagedRows | None:
        """Every accepted file's rows, in file order, for the warehouse (None: no file was
        accepted): runs of files in ``table`` as one slice each, and the spilled files."""
        parts: list[pa.Table | SpilledRows] = []
        run: tuple[int, int] | None = None  # (offset, rows) of table rows not in ``parts`` yet
        for position in self.accepted:
            if position in self.spilled:
                if run is not None:
                    parts.append(self.table.slice(*run))
                    run = None
                parts.append(self.spilled[position])
                continue
            offset, rows = self._in_table[position]
            run = (offset, rows) if run is None else (run[0], run[1] + rows)
        if run is not None:
            parts.append(self.table.slice(*run))
        return StagedRows(parts) if parts else None


def prepare_files(feed: str, files: list[tuple[str, bytes, str, dt.date]], pii_key: str,
                  spill_dir: str | None = None) -> PreparedFiles:
    """Decode, read, validate (one pandera call, ``validate_many``) and tokenize a chunk of
    ``(file name, bytes, state, month)`` of one feed. Pure and picklable both ways, so the feed
    loaders can run it in worker processes; it touches neither the lake nor the warehouse (a
    big file's rows go to a temporary file in ``spill_dir``, ``staged_rows``).

    Small plain files are read by Arrow, many in one call (``plain_csv``), the others by the
    csv module (``column_batches``). The files' text columns are joined (Arrow) into one frame,
    validated and typed at once; a file the combined validation implicates is validated again
    on its own frame. A file of more than ``SLICE_ROWS`` records is read, validated and typed a
    slice at a time instead (``_prepare_in_slices``)."""
    started = time.perf_counter()
    spec = ALL_SPECS[feed]
    verdicts: list[FileRejected | None] = [None] * len(files)
    read: list[tuple[int, pa.Table, Sequence[int], str, dt.date, str]] = []
    spilled: dict[int, SpilledRows] = {}
    # Small plain files are read by Arrow, many at once (``plain_csv``); the rest as before.
    texts: dict[int, str | Utf8Text] = {}
    for position, (filename, data, _, _) in enumerate(files):
        if len(data) <= plain_csv.PLAIN_MAX_BYTES:
            try:
                texts[position] = decoded(data, filename)
            except FileRejected as rejected:
                verdicts[position] = rejected
    # (A file decoded in pieces, or of more than ``SLICE_ROWS`` lines, is left to the csv
    # module: a file of more than ``SLICE_ROWS`` records is read a slice at a time.)
    plain = plain_csv.read_plain(
        {position: text.encode("utf-8") for position, text in texts.items()
         if isinstance(text, str) and text.count("\n") <= SLICE_ROWS}, spec.input_columns)
    try:
        for position, (filename, data, state, month) in enumerate(files):
            if verdicts[position] is not None:
                continue
            if position in plain:
                read.append((position, *plain.pop(position), state, month, filename))
                texts.pop(position)
                continue
            try:
                text = texts.pop(position) if position in texts else decoded(data, filename)
                batches = column_batches(text, spec)
                head, count = [], 0
                for batch in batches:
                    head.append(batch)
                    count += batch[0].num_rows
                    if count > SLICE_ROWS:
                        break
                else:
                    read.append((position, *_joined_batches(head), state, month, filename))
                    continue
                spilled_rows = _prepare_in_slices(itertools.chain(_drained(head), batches),
                                                  spec, state, month, filename, pii_key,
                                                  spill_dir)
                head = batches = None
                if spilled_rows is not None:
                    spilled[position] = spilled_rows
                    continue
                # A slice broke a rule: the file is read whole, so that its rejection reads as
                # it always does (every failing row of the file, in one report).
                read.append((position, *read_text_columns(text, spec), state, month, filename))
            except FileRejected as rejected:
                verdicts[position] = rejected
        if len(read) == 1:
            checked = [_rejection(text_frame(read[0][1], read[0][2]), spec, read[0][3],
                                  read[0][4])]
        elif read:
            combined = text_frame(pa.concat_tables([columns for _, columns, *_ in read])
                                  .combine_chunks())
            checked = _validate_combined(
                combined,
                [(columns.num_rows, state, month) for _, columns, _, state, month, _ in read],
                lambda number: text_frame(read[number][1], read[number][2]), spec)
        else:
            checked = []
        good = []
        for (position, columns, _, state, month, filename), rejected in zip(read, checked):
            if rejected is None:
                good.append((columns, state, month, filename))
            else:
                verdicts[position] = rejected
        table = None
        if good:
            frame = (combined if len(good) == len(read) > 1 else text_frame(
                pa.concat_tables([columns for columns, *_ in good]).combine_chunks()))
            table = _to_table_combined(
                frame, [(columns.num_rows, *rest) for columns, *rest in good], spec, pii_key)
    except BaseException:
        for rows in spilled.values():
            rows.discard()
        raise
    in_table = iter(columns.num_rows for columns, *_ in good)
    rows = [spilled[position].num_rows if position in spilled else next(in_table)
            for position, verdict in enumerate(verdicts) if verdict is None]
    return PreparedFiles(verdicts, table, rows, time.perf_counter() - started, os.getpid(),
                         spilled)


def _joined_batches(batches: list[tuple[pa.Table, Sequence[int]]]
                    ) -> tuple[pa.Table, Sequence[int]]:
    """``column_batches``' batches (one or more) as one: a table whose columns are one array
    each, and the line each of its rows starts on."""
    if len(batches) == 1:
        return batches[0]
    return (pa.concat_tables([table for table, _ in batches]).combine_chunks(),
            array.array("q", itertools.chain.from_iterable(lines for _, lines in batches)))


def _drained(held: list) -> Iterator:
    """``held``'s items in order, each let go of as it is given."""
    held.reverse()
    while held:
        yield held.pop()


def _slices(batches: Iterable[tuple[pa.Table, Sequence[int]]]
            ) -> Iterator[tuple[pa.Table, Sequence[int]]]:
    """``column_batches``' batches joined into slices of at most ``SLICE_ROWS`` records (or
    one batch, when a batch holds more)."""
    held: list[tuple[pa.Table, Sequence[int]]] = []
    count = 0
    for batch in batches:
        if held and count + batch[0].num_rows > SLICE_ROWS:
            yield _joined_batches(held)
            held, count = [], 0
        held.append(batch)
        count += batch[0].num_rows
    if held:
        yield _joined_batches(held)


def _prepare_in_slices(batches: Iterable[tuple[pa.Table, Sequence[int]]], spec: FeedSpec,
                       state: str, month: dt.date, filename: str, pii_key: str,
                       spill_dir: str | None = None) -> SpilledRows | None:
    """A big file's batches validated, tokenized and typed a slice at a time, its typed rows
    written to a spill file as they come: the file's bytes and a slice are in memory, never
    all its rows as Python, pandas and Arrow objects at once.

    Every rule of the contracts but one is about a row alone (and the file's state and
    month), so a slice keeps it exactly when its rows do in the whole file; values unique
    within the file are also checked across slices (by their 64-bit hashes, 8 bytes a row).
    None when any rule is broken (or two ids share a hash): the caller then reads the file
    whole, for the report it always gives. A file whose rows have the wrong number of fields
    raises its rejection (``column_batches``) once they are all read."""
    keys = {column: [] for column in contracts.unique_columns(spec.contract)}
    writer: SpillWriter | None = None
    try:
        for columns, lines in _slices(batches):
            frame = text_frame(columns, lines)
            if _rejection(frame, spec, state, month) is not None:
                if writer is not None:
                    writer.abandon()
                return None
            for column, values in keys.items():
                # Each id as a 64-bit hash (8 bytes a row, in NumPy: an Arrow buffer kept from
                # each slice would hold on to the memory around it).
                values.append(pd.util.hash_array(
                    columns.column(column).to_numpy(zero_copy_only=False)))
            typed = to_table(frame, spec, state=state, month=month, source_file=filename,
                             pii_key=pii_key)
            frame = columns = None
            if writer is None:
                writer = SpillWriter(typed.schema, spill_dir)
            writer.write(typed)
            typed = None
            # Arrow's allocator keeps what a slice freed, and the next slice mostly takes new
            # memory instead: give it back, or the file's slices add up after all.
            pa.default_memory_pool().release_unused()
        for values in keys.values():
            hashes = np.sort(np.concatenate(values))
            if (hashes[1:] == hashes[:-1]).any():  # a repeated id (or, rarely, two ids' hash)
                writer.abandon()
                return None
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
    return writer.finish()
