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
    """``tok_`` + the first 16 bytes of HMAC-SHA256(key, identity), hex, for each identity.

    HMAC as RFC 2104 defines it, spelled out on ``hashlib``: the inner and outer hashes of the
    padded key are computed once and copied per identity, which costs about half of copying an
    ``hmac`` object per value (``test_pii`` checks it against ``hmac``)."""
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    inner_copy = hashlib.sha256(key.translate(_XOR_IPAD)).copy
    outer_copy = hashlib.sha256(key.translate(_XOR_OPAD)).copy
    tokens = []
    for identity in identities:
        inner = inner_copy()
        inner.update(identity.encode())
        outer = outer_copy()
        outer.update(inner.digest())
        tokens.append("tok_" + outer.digest()[:16].hex())
    return tokens


def _ssn_digits(values: pd.Series) -> list[str]:
    """``normalize_ssn`` of each value (``''`` for a missing one), a whole column at a time
    when every value is ASCII text (validated SSNs are); value by value otherwise (a Unicode
    digit counts as a digit, as in ``normalize_ssn``)."""
    try:
        if isinstance(values.dtype, pd.ArrowDtype):  # Arrow-backed text: its own arrays
            text = pa.array(values.array).cast(pa.string())
        else:
            text = pa.array(values.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        text = None
    if text is not None and pc.all(pc.string_is_ascii(text)).as_py() is not False:
        return pc.replace_substring_regex(text, "[^0-9]", "").fill_null("").to_pylist()
    return [normalize_ssn(ssn) for ssn in _text(values.to_frame(), values.name,
                                                range(len(values)))]


def person_tokens(frame: pd.DataFrame, key: str, *, ssn_column: str = "ssn") -> list[str]:
    """``person_token`` of each row of ``frame`` (its SSN, else its name, date of birth and
    ZIP), in row order. The name, date of birth and ZIP columns are only read for the rows
    without an SSN (most rows have one)."""
    if ssn_column in frame.columns:
        digits = _ssn_digits(frame[ssn_column])
    else:
        digits = [""] * len(frame)
    identities = ["ssn:" + ssn for ssn in digits]
    missing = [row for row, ssn in enumerate(digits) if not ssn]
    if missing:
        columns = [_text(frame, name, missing)
                   for name in ("first_name", "last_name", "date_of_birth", "zip")]
        for row, values in zip(missing, zip(*columns)):
            identities[row] = identity_string("", *values)
    return _tokens(key.encode(), identities)


def tokenize_frame(frame: pd.DataFrame, key: str, *, ssn_column: str = "ssn",
                   token_column: str = "person_token") -> pd.DataFrame:
    """Return a copy with ``person_token`` added and the SSN column dropped (same tokens as
    ``person_token`` row by row)."""
    tokens = person_tokens(frame, key, ssn_column=ssn_column)
    out = frame.drop(columns=[ssn_column], errors="ignore")
    out.insert(0, token_column, pd.array(tokens, dtype="string"))
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
