"""A validated text frame -> the typed raw Arrow table the warehouse loads.

Each column becomes its ``FeedSpec.arrow_schema`` type, read with the column readers the
contract's rules use (``text_values``: what validates is what loads, so a file that met the
contract always converts); an optional column's empty values become nulls, ``ssn`` becomes
``person_token`` (``core.pii``), and the partition columns (``state``, ``month``,
``_source_file``, and ``_partner`` for a partner feed) are added.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa

from bdt_platform.core.pii import person_token_array
from bdt_platform.feeds.text_values import (FIRST_INSTANT, INSTANT_AFTER, arrow_array,
                                            parse_dates, parse_timestamps)
from bdt_platform.feeds.filenames import partner_of
from bdt_platform.feeds.specs import FeedSpec


def to_table(frame: pd.DataFrame, spec: FeedSpec, *, state: str, month: dt.date,
             source_file: str, pii_key: str, partner=None) -> pa.Table:
    """Validated text frame -> the typed raw table (SSNs replaced by person tokens).
    ``state``, ``month`` and ``source_file`` are one value for every row, or one per row (a
    frame holding several files; then ``partner`` too, else it is read from the file name).
    ``frame`` is left as it is."""
    columns: dict[str, pd.Series | np.ndarray | list | pa.Array] = {name: frame[name]
                                                         for name in frame.columns}
    for column in spec.optional:
        if column in columns and column != "ssn":
            columns[column] = columns[column].where(columns[column] != "", None)
    if spec.tokenize:
        columns["person_token"] = person_token_array(frame, pii_key)
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
    return to_table_combined(combined, [(len(frame), *rest) for frame, *rest in files], spec,
                             pii_key)


def to_table_combined(combined: pd.DataFrame, files: list[tuple[int, str, dt.date, str]],
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
    if isinstance(values, pa.Array):  # the person tokens
        return values.cast(arrow_type)
    if not isinstance(values, (pd.Series, np.ndarray, list)):
        return pa.array([values], type=arrow_type).take(np.zeros(length, dtype=np.int64))
    if not isinstance(values, pd.Series):
        values = pd.Series(values, dtype=object)
    if arrow_type == pa.string() and isinstance(values.dtype, pd.ArrowDtype):
        return arrow_array(values).cast(arrow_type)
    if arrow_type == pa.date32():
        if len(values) and isinstance(values.iloc[0], dt.date):
            return pa.array(values.to_numpy(dtype=object), type=arrow_type)
        days = parse_dates(values)
        return pa.array(days, type=arrow_type, mask=np.isnat(days))
    if pa.types.is_timestamp(arrow_type):
        utc = _in_datetime_range(parse_timestamps(values).utc)
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
    if ((utc < FIRST_INSTANT) | (utc >= INSTANT_AFTER)).any():
        raise OverflowError("date value out of range")
    return utc
