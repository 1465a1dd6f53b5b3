"""Person tokens: keyed HMAC of identifiers, so the warehouse never holds an SSN in clear.

A token is ``tok_`` + the first 128 bits (32 hex characters) of HMAC-SHA256(key, normalized SSN),
or of the normalized ``first|last|dob|zip5`` when the SSN is empty (feeds.md, "Person tokens").
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

TOKEN_PATTERN = r"^tok_[0-9a-f]{32}$"
_TOKEN_RE = re.compile(TOKEN_PATTERN)
_SSN_RE = re.compile(r"\d{3}-?\d{2}-?\d{4}")
_NON_DIGITS = re.compile(r"\D")
_SHA256_BLOCK = 64  # bytes: HMAC pads the key to the hash's block size
_XOR_IPAD = bytes(byte ^ 0x36 for byte in range(256))
_XOR_OPAD = bytes(byte ^ 0x5C for byte in range(256))


def normalize_ssn(ssn: str | None) -> str:
    """Digits only; ``''`` when empty."""
    return _NON_DIGITS.sub("", ssn or "")


def normalize_name(text: str | None) -> str:
    """Upper case, accents removed, only letters kept (``"O'Brien-Núñez"`` -> ``OBRIENNUNEZ``)."""
    text = unicodedata.normalize("NFKD", text or "")
    return "".join(ch for ch in text if ch.isalpha() and not unicodedata.combining(ch)).upper()


def identity_string(ssn: str | None, first_name: str | None, last_name: str | None,
                    date_of_birth: str | None, zip_code: str | None) -> str:
    digits = normalize_ssn(ssn)
    if digits:
        return f"ssn:{digits}"
    zip5 = _NON_DIGITS.sub("", zip_code or "")[:5]
    return (f"name:{normalize_name(first_name)}|{normalize_name(last_name)}"
            f"|{(date_of_birth or '').strip()}|{zip5}")


def person_token(key: str, ssn: str | None = None, first_name: str | None = None,
                 last_name: str | None = None, date_of_birth: str | None = None,
                 zip_code: str | None = None) -> str:
    return _tokens(key.encode(), [identity_string(ssn, first_name, last_name, date_of_birth,
                                                  zip_code)])[0]


def _tokens(key: bytes, identities: Iterable[str]) -> list[str]:
    """``tok_`` + the first 16 bytes of HMAC-SHA256(key, identity), hex, for each identity."""
    return _token_array(key, [identity.encode() for identity in identities]).to_pylist()


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_TOKEN_PREFIX = np.frombuffer(b"tok_", dtype=np.uint8)
_TOKEN_LENGTH = 4 + 32


def _token_array(key: bytes, identities: Sequence[bytes]) -> pa.StringArray:
    """``_tokens`` of UTF-8 identities, as one Arrow string array.

    HMAC as RFC 2104 defines it, spelled out on ``hashlib``: the inner and outer hashes of the
    padded key are computed once and copied per identity, which costs about half of copying an
    ``hmac`` object per value (``test_pii`` checks it against ``hmac``). Only the digests are
    made per value; their hex and the ``tok_`` prefix are written for all values at once into
    the array's buffer (no Python string per token)."""
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    inner_copy = hashlib.sha256(key.translate(_XOR_IPAD)).copy
    outer_copy = hashlib.sha256(key.translate(_XOR_OPAD)).copy
    digests = []
    append = digests.append
    for identity in identities:
        inner = inner_copy()
        inner.update(identity)
        outer = outer_copy()
        outer.update(inner.digest())
        append(outer.digest())
    count = len(digests)
    head = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(count, 32)[:, :16]
    text = np.empty((count, _TOKEN_LENGTH), dtype=np.uint8)
    text[:, :4] = _TOKEN_PREFIX
    text[:, 4::2] = _HEX_DIGITS[head >> 4]
    text[:, 5::2] = _HEX_DIGITS[head & 15]
    offsets = np.arange(0, _TOKEN_LENGTH * (count + 1), _TOKEN_LENGTH, dtype=np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(text))


def _ascii_text(values: pd.Series) -> pa.StringArray | None:
    """The column as Arrow text when every value is ASCII text (validated SSNs are); else
    None (a Unicode digit counts as a digit in ``normalize_ssn``: read value by value)."""
    try:
        if isinstance(values.dtype, pd.ArrowDtype):  # Arrow-backed text: its own arrays
            text = pa.array(values.array).cast(pa.string())
        else:
            text = pa.array(values.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    return text if pc.all(pc.string_is_ascii(text)).as_py() is not False else None


def _digits_array(values: pd.Series) -> pa.StringArray:
    """``normalize_ssn`` of each value (``''`` for a missing one) as Arrow text, a whole column
    at a time when it is ASCII text; value by value otherwise."""
    text = _ascii_text(values)
    if text is not None:
        return pc.replace_substring_regex(text, "[^0-9]", "").fill_null("")
    return pa.array([normalize_ssn(ssn) for ssn in _text(values.to_frame(), values.name,
                                                         range(len(values)))], type=pa.string())


def _ssn_digits(values: pd.Series) -> list[str]:
    """``normalize_ssn`` of each value (``''`` for a missing one), as a list."""
    return _digits_array(values).to_pylist()


def person_token_array(frame: pd.DataFrame, key: str, *, ssn_column: str = "ssn"
                       ) -> pa.StringArray:
    """``person_token`` of each row of ``frame`` (its SSN, else its name, date of birth and
    ZIP), in row order, as one Arrow string array. The name, date of birth and ZIP columns are
    only read for the rows without an SSN (most rows have one)."""
    if ssn_column in frame.columns:
        digits = _digits_array(frame[ssn_column])
    else:
        digits = pa.array([""] * len(frame), type=pa.string())
    identities = pc.binary_join_element_wise("ssn:", digits, "").cast(pa.binary()).to_pylist()
    missing = np.flatnonzero(pc.equal(pc.binary_length(digits), 0).to_numpy(
        zero_copy_only=False)).tolist()
    if missing:
        columns = [_text(frame, name, missing)
                   for name in ("first_name", "last_name", "date_of_birth", "zip")]
        for row, values in zip(missing, zip(*columns)):
            identities[row] = identity_string("", *values).encode()
    return _token_array(key.encode(), identities)


def person_tokens(frame: pd.DataFrame, key: str, *, ssn_column: str = "ssn") -> list[str]:
    """``person_token_array`` as a list of strings."""
    return person_token_array(frame, key, ssn_column=ssn_column).to_pylist()


def tokenize_frame(frame: pd.DataFrame, key: str, *, ssn_column: str = "ssn",
                   token_column: str = "person_token") -> pd.DataFrame:
    """Return a copy with ``person_token`` added and the SSN column dropped (same tokens as
    ``person_token`` row by row)."""
    tokens = person_token_array(frame, key, ssn_column=ssn_column)
    out = frame.drop(columns=[ssn_column], errors="ignore")
    out.insert(0, token_column, pd.array(tokens.to_pylist(), dtype="string"))
    return out


def _text(frame: pd.DataFrame, column: str, rows: Sequence[int]) -> list[str]:
    """The column's values at row positions ``rows`` as text (``''`` for a missing column or
    value)."""
    if column not in frame.columns:
        return [""] * len(rows)
    values = frame[column]
    if len(rows) != len(frame):
        values = values.iloc[list(rows)]
    return values.astype("string").fillna("").tolist()


def is_token(value: str | None) -> bool:
    return bool(value) and bool(_TOKEN_RE.match(value))


def mask_ssn(value: object) -> object:
    """Mask anything SSN-shaped inside a value for logs, reasons and metadata (``***-**-1234``)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return value
    return _SSN_RE.sub(lambda m: "***-**-" + re.sub(r"\D", "", m.group())[-4:], str(value))
