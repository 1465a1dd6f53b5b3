"""Order-free digests of table contents: what a memo or a kept result is keyed by.

A row's hash is pandas' (``hash_pandas_object``, 64 bits, the row's values in column order); a
set of rows folds to (count, XOR, sum mod 2**64) of its rows' hashes, so the same rows in
another order (DuckDB returns an unordered query's rows in any order) give the same digest,
and a duplicated row does not cancel out (the count and the sum see it)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)


def fold(hashes: np.ndarray) -> bytes:
    return np.array([len(hashes), np.bitwise_xor.reduce(hashes) if len(hashes) else 0,
                     hashes.sum(dtype=np.uint64)], dtype=np.uint64).tobytes()


def columns(frame: pd.DataFrame) -> bytes:
    """The frame's column names and types, in order."""
    return repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode()


def frames_digest(*frames: pd.DataFrame) -> str:
    """Hex digest of the frames' columns and rows, each frame's rows in any order."""
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(columns(frame) + b"|" + fold(row_hashes(frame)) + b"|")
    return digest.hexdigest()
