"""Person tokens: keyed HMAC of identifiers, so the warehouse never holds an SSN in clear.

A token is ``tok_`` + the first 128 bits (32 hex characters) of HMAC-SHA256(key, normalized SSN),
or of the normalized ``first|last|dob|zip5`` when the SSN is empty (feeds.md, "Person tokens").
"""

from __future__ import annotations

import hmac
import re
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

TOKEN_PATTERN = r"^tok_[0-9a-f]{32}$"
_TOKEN_RE = re.compile(TOKEN_PATTERN)
_SSN_RE = re.compile(r"\d{3}-?\d{2}-?\d{4}")
_NON_DIGITS = re.compile(r"\D")


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
    The keyed state is set up once and copied per identity."""
    keyed = hmac.new(key, digestmod="sha256")
    tokens = []
    for identity in identities:
        mac = keyed.copy()
        mac.update(identity.encode())
        tokens.append("tok_" + mac.digest()[:16].hex())
    return tokens


def tokenize_frame(frame: pd.DataFrame, key: str, *, ssn_column: str = "ssn",
                   token_column: str = "person_token") -> pd.DataFrame:
    """Return a copy with ``person_token`` added and the SSN column dropped.

    Same tokens as ``person_token`` row by row; the name, date of birth and ZIP columns are only
    read for the rows without an SSN (most rows have one)."""
    key_bytes = key.encode()
    digits = [normalize_ssn(ssn) for ssn in _text(frame, ssn_column, range(len(frame)))]
    identities = [f"ssn:{ssn}" for ssn in digits]
    missing = [row for row, ssn in enumerate(digits) if not ssn]
    if missing:
        columns = [_text(frame, name, missing)
                   for name in ("first_name", "last_name", "date_of_birth", "zip")]
        for row, values in zip(missing, zip(*columns)):
            identities[row] = identity_string("", *values)
    tokens = _tokens(key_bytes, identities)
    out = frame.drop(columns=[ssn_column], errors="ignore").copy()
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
