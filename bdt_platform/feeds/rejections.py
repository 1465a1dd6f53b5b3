"""Rejection reports: which rules a file broke, in a form a partner can act on.

A step that finds a problem raises :class:`FileRejected`, listing every failed rule
(:class:`ContractFailure`) with its column, count and up to ``MAX_EXAMPLES`` example rows (line
numbers as in the file). Rule names and descriptions come from ``contract_rules``
(``FILE_RULES`` for the steps before pandera). The reports are what quarantine reason files and
the Dagster UI show.

PII in reports: example rows never show a full SSN. The ``ssn`` and ``recipient_key`` columns
(where an SSN would sit) show only their last four digits unless they hold a well-formed person
token; in every other value any SSN-shaped text or run of nine or more digits is masked the same
way (a 10-digit phone shows as ``******3095``). Unexpected header names are masked too.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from bdt_platform.core.pii import is_token

MAX_EXAMPLES = 20
# Columns where a raw SSN would sit: every digit but the last four is masked, whatever the shape.
PII_COLUMNS = ("ssn", "recipient_key")
_SSN_SHAPED_RE = re.compile(r"\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4}|\d{9,}")
MAX_TEXT = 200  # longest masked value quoted in an example


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


def reject(rule: str, message: str, column: str | None = None, count: int = 1,
           examples: list[dict] | None = None) -> FileRejected:
    """The rejection of a file that broke one rule (a step before pandera)."""
    return FileRejected([ContractFailure(rule, column, count, message, examples or [])])


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


def masked_names(names: list[str]) -> str:
    return ", ".join(repr(mask_value(name)) for name in names)
