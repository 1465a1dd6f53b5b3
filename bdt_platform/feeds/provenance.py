"""What a load run records: code version, and per-file outcomes for the contract check."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from bdt_platform import __version__
from bdt_platform.feeds.filenames import partner_of


def source_code_version(*module_files: str) -> str:
    """``<package version>+<sha256 of the given modules' source, 12 hex>``: changes whenever the
    code that shapes the rows changes, so a changed number can be traced to a code change."""
    digest = hashlib.sha256()
    for name in module_files:
        digest.update(Path(name).read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


_HERE = Path(__file__).parent
# The modules that shape a raw row, from a file's bytes to its typed, tokenized row (and decide
# which files' rows are loaded). Not ``rejections``: it words the reports of rejected files.
ROW_SHAPING_MODULES = (
    _HERE / "decoding.py", _HERE / "csv_reader.py", _HERE / "plain_csv.py",
    _HERE / "text_values.py", _HERE / "contract_rules.py", _HERE / "contracts.py",
    _HERE / "validation.py", _HERE / "typed_table.py", _HERE / "slices.py",
    _HERE / "parsing.py", _HERE / "specs.py", _HERE.parent / "core" / "pii.py",
)
CODE_VERSION = source_code_version(*map(str, ROW_SHAPING_MODULES))

# Dagster's own tag names for a materialization's data and code version (what its staleness
# and the UI's "data version" read); only ``dagster/data_version`` is indexed per partition.
DATA_VERSION_TAG = "dagster/data_version"
DATA_VERSION_IS_USER_PROVIDED_TAG = "dagster/data_version_is_user_provided"
CODE_VERSION_TAG = "dagster/code_version"
#: The metadata entry of a raw partition's materialization with the version of its
#: ``FeedSpec.join_columns`` alone (``join_version``): what other partitions' models read of it.
#: Metadata, not a tag: Dagster indexes only the data version tag per partition.
JOIN_VERSION_KEY = "join_version"


def partition_version_tags(checksums: list[str], code_version: str = CODE_VERSION
                           ) -> dict[str, str]:
    """The tags that give a raw partition's materialization its ``dg.DataVersion``: a sha256 of
    the code version and the sha256 of every file (or extract) the partition holds rows of, in
    order (the caller sorts them). Same files, same code: same version, however often they are
    loaded again; one changed byte or a new code version: a new one. Dagster cannot take one
    data version per partition from a run that materializes many (``MaterializeResult`` has one,
    dagster-io/dagster#34013), so the per-partition events carry it as Dagster's own tags."""
    digest = hashlib.sha256(code_version.encode())
    for checksum in checksums:
        digest.update(b"\0" + checksum.encode())
    return {DATA_VERSION_TAG: dg.DataVersion(digest.hexdigest()).value,
            DATA_VERSION_IS_USER_PROVIDED_TAG: "true", CODE_VERSION_TAG: code_version}


def join_version(table, columns: tuple[str, ...]) -> str:
    """A sha256 (16 hex) of the set of rows of ``columns`` in the Arrow ``table`` (a partition's
    typed rows): the same rows in any order, the same version."""
    import numpy as np
    import pandas as pd

    frame = table.select(list(columns)).to_pandas()
    hashes = np.sort(pd.util.hash_pandas_object(frame, index=False).to_numpy())
    return hashlib.sha256(",".join(columns).encode() + hashes.tobytes()).hexdigest()[:16]


@dataclass
class FeedLoadReport:
    """Per-file outcomes of one load run, summarized in the contract check's result."""

    feed: str
    loaded: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)

    def load(self, partition: str, filename: str, rows: int) -> None:
        self.loaded.append({"partition": partition, "file": filename, "rows": rows})

    def reject(self, partition: str, filename: str, reason: str, quarantined_to: str) -> None:
        self.rejected.append({"partition": partition, "file": filename, "reason": reason,
                              "quarantined_to": quarantined_to})

    def summary(self) -> str:
        text = f"{len(self.loaded)} file(s) met the {self.feed} contract"
        if self.rejected:
            names = ", ".join(r["file"] for r in self.rejected[:5])
            text += f"; {len(self.rejected)} rejected and quarantined: {names}"
        return text

    def as_metadata(self) -> dict:
        return {
            "files_loaded": len(self.loaded),
            "files_rejected": len(self.rejected),
            "loaded": dg.MetadataValue.json(self.loaded[:200]),
            "rejected": dg.MetadataValue.json(self.rejected),
        }


def sources_of(metadata: dict) -> list[dict]:
    """Every file a feed partition's materialization says the partition holds rows of: its
    ``sources`` (partner, file, sha256, size_bytes, received_at, archive_path, rows), one per
    partner. A materialization recorded before several partners per feed (or of a
    case-management extract) names one file in ``source_*`` entries: that file, alone."""
    def value(entry):
        return entry.value if hasattr(entry, "value") else entry

    listed = metadata.get("sources")
    if listed is not None:
        return list(value(listed))
    if "source_file" not in metadata:
        return []
    one = {name: value(metadata.get(f"source_{name}")) for name in
           ("file", "sha256", "size_bytes", "received_at", "archive_path")}
    rows = metadata.get("dagster/row_count")
    return [{"partner": partner_of(one["file"] or ""), **one,
             "rows": None if rows is None else value(rows)}]
