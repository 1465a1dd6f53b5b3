"""From a partner file's bytes to a validated, tokenized, typed table - or a clear rejection.

Steps: decode (gzip, UTF-8, BOM) -> read as text -> columns -> pandera contract -> typed Arrow
table with ``person_token`` instead of ``ssn`` and the partition columns. Each step that finds a
problem raises :class:`FileRejected` listing every failed rule with its column, count and up to
20 example rows (line numbers as in the file, identifiers masked).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import zlib
from dataclasses import asdict, dataclass, field

import pandas as pd
import pandera.errors
import pyarrow as pa

from bdt_platform.feeds import contracts
from bdt_platform.feeds.specs import FeedSpec
from bdt_platform.pii import mask_ssn, tokenize_frame

MAX_EXAMPLES = 20
PII_COLUMNS = ("ssn",)


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


class FileRejected(Exception):
    """A file broke the contract; nothing from it may be loaded."""

    def __init__(self, failures: list[ContractFailure]):
        self.failures = failures
        super().__init__(summarize(failures))


def summarize(failures: list[ContractFailure]) -> str:
    parts = []
    for failure in failures[:3]:
        where = f" on {failure.column}" if failure.column else ""
        parts.append(f"{failure.rule}{where} ({failure.count} row{'s' if failure.count != 1 else ''})")
    more = f" and {len(failures) - 3} more" if len(failures) > 3 else ""
    return "; ".join(parts) + more


def _reject(rule: str, message: str, column: str | None = None, count: int = 1,
            examples: list[dict] | None = None) -> FileRejected:
    return FileRejected([ContractFailure(rule, column, count, message, examples or [])])


def decode(data: bytes, filename: str) -> str:
    """Bytes as delivered -> text. Broken gzip, binary data, non-UTF-8 and empty files fail."""
    if filename.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise _reject("gzip_readable", f"file is not readable gzip: {exc}") from None
    if not data.strip():
        raise _reject("file_not_empty", "file is empty")
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise _reject("text_not_binary", f"file holds binary data (NUL byte at offset {offset})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _reject("utf8_encoding", f"byte 0x{data[exc.start]:02x} at line {line} is not UTF-8",
                      examples=[{"line": line}]) from None
    return text.removeprefix("\ufeff")


def read_text_frame(text: str, spec: FeedSpec) -> pd.DataFrame:
    """CSV text -> a DataFrame of strings with exactly the contract's columns."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        rows = list(reader)
    except csv.Error as exc:
        raise _reject("csv_well_formed", f"CSV is malformed: {exc}") from None
    header = [name.strip() for name in header]
    expected = spec.input_columns
    missing = [c for c in expected if c not in header]
    unexpected = [c for c in header if c not in expected]
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if missing or unexpected or duplicated:
        failures = []
        if missing:
            failures.append(ContractFailure("required_columns_present", ",".join(missing),
                                            len(missing), f"missing column(s): {', '.join(missing)}"))
        if unexpected:
            failures.append(ContractFailure("no_unexpected_columns", ",".join(unexpected),
                                            len(unexpected),
                                            f"unexpected column(s): {', '.join(unexpected)}"))
        if duplicated:
            failures.append(ContractFailure("unique_column_names", ",".join(duplicated),
                                            len(duplicated),
                                            f"duplicated column(s): {', '.join(duplicated)}"))
        raise FileRejected(failures)
    rows = [row for row in rows if row != []]  # a trailing blank line is not a record
    bad = [(number + 2, len(row)) for number, row in enumerate(rows) if len(row) != len(header)]
    if bad:
        examples = [{"line": line, "fields": count} for line, count in bad[:MAX_EXAMPLES]]
        raise _reject("field_count_matches_header",
                      f"{len(bad)} row(s) do not have {len(header)} fields", count=len(bad),
                      examples=examples)
    frame = pd.DataFrame(rows, columns=header, dtype="object")
    return frame[expected].astype(str)


def validate(frame: pd.DataFrame, spec: FeedSpec, state: str, month: dt.date) -> None:
    """Run the feed's pandera contract; raise :class:`FileRejected` with every failed rule."""
    checked = frame.assign(file_state=state, file_month=month.isoformat())
    try:
        spec.contract.validate(checked, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        raise FileRejected(_failures_from_pandera(errors.failure_cases, frame)) from None


def _failures_from_pandera(cases: pd.DataFrame, frame: pd.DataFrame) -> list[ContractFailure]:
    failures = []
    cases = cases.copy()
    cases["check"] = cases["check"].astype(str)
    # Dataframe-level rules are reported once per column of each failing row: fold them back
    # onto the one column the rule is about.
    frame_level = cases["schema_context"].astype(str) == "DataFrameSchema"
    cases.loc[frame_level, "column"] = cases.loc[frame_level, "check"].map(contracts.RULE_COLUMNS)
    cases = cases.drop_duplicates(subset=["check", "column", "index"])
    for (check_name, column), group in cases.groupby(["check", "column"], dropna=False, sort=False):
        rule = check_name
        column = column if isinstance(column, str) else None
        indexes = [int(i) for i in group["index"].dropna().unique()]
        examples = []
        for index in indexes[:MAX_EXAMPLES]:
            row = {k: mask_ssn(v) if k in PII_COLUMNS else v for k, v in frame.loc[index].items()}
            examples.append({"line": index + 2, "value": mask_ssn(row.get(column)) if column else None,
                             "row": {k: mask_ssn(v) for k, v in row.items()}})
        count = len(indexes) or len(group)
        failures.append(ContractFailure(rule, column, count, _message(rule, column, count), examples))
    return failures


def _message(rule: str, column: str | None, count: int) -> str:
    where = f"column {column}" if column else "the file"
    return f"{count} row(s) in {where} break rule {rule}"


def to_table(frame: pd.DataFrame, spec: FeedSpec, *, state: str, month: dt.date,
             source_file: str, pii_key: str) -> pa.Table:
    """Validated text frame -> the typed raw table (SSNs replaced by person tokens)."""
    frame = frame.copy()
    for column in spec.optional:
        if column in frame.columns and column != "ssn":
            frame[column] = frame[column].where(frame[column] != "", None)
    if spec.tokenize:
        frame = tokenize_frame(frame, pii_key)
    frame["state"] = state
    frame["month"] = month
    frame["_source_file"] = source_file
    schema = spec.arrow_schema
    arrays = []
    for schema_field in schema:
        values = frame[schema_field.name]
        arrays.append(_typed(values, schema_field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _typed(values: pd.Series, arrow_type: pa.DataType) -> pa.Array:
    if arrow_type == pa.date32():
        if len(values) and isinstance(values.iloc[0], dt.date):
            return pa.array(values.tolist(), type=arrow_type)
        return pa.array(contracts.as_date(values.fillna("")).dt.date, type=arrow_type)
    if pa.types.is_timestamp(arrow_type):
        return pa.array(contracts.as_timestamp(values.fillna("")), type=arrow_type)
    if arrow_type == pa.int64():
        return pa.array(pd.to_numeric(values), type=arrow_type)
    if arrow_type == pa.float64():
        return pa.array(pd.to_numeric(values), type=arrow_type)
    return pa.array(values.tolist(), type=arrow_type)
