"""Serializing a table to the contract's CSV bytes and dropping it into the inbox atomically.

A partner drop must never be seen half-written: the bytes go to a temporary file in the hidden
``<inbox>/.tmp/`` folder (same file system as the inbox, so the final ``os.replace`` is an atomic
rename) and only then appear under ``<inbox>/<partner>/<name>``. Gzip output uses ``mtime=0`` and no
file name in the header, so the same table always gives the same bytes.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

TMP_DIR = ".tmp"


def csv_bytes(columns: Mapping[str, Sequence[str]]) -> bytes:
    """UTF-8 CSV (no BOM), header row, ``""`` quoting where needed, LF line endings.

    ``columns`` maps column name -> the column's values, already spelled as text.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(list(columns))
    writer.writerows(zip(*columns.values()))
    return buffer.getvalue().encode("utf-8")


def gzip_bytes(data: bytes) -> bytes:
    """Byte-deterministic gzip: fixed mtime, no original file name in the header."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=buffer, mode="wb", mtime=0) as compressed:
        compressed.write(data)
    return buffer.getvalue()


def write_atomic(inbox: Path, relative: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``inbox/relative`` via ``inbox/.tmp/`` and a rename; return the path."""
    target = Path(inbox) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(inbox) / TMP_DIR
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix=target.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def remove_tmp_dir(inbox: Path) -> None:
    """Remove ``inbox/.tmp/`` if it is empty (another writer may still be using it)."""
    try:
        (Path(inbox) / TMP_DIR).rmdir()
    except OSError:
        pass
