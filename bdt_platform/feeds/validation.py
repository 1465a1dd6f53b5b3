"""Running a feed's pandera contract (``contracts``) on text frames, and reporting what broke.

``validate`` checks one file's frame; ``validate_many`` many files' frames in one pandera call
(its fixed cost, ~50-100 ms, paid once), each file judged exactly as if alone. A file that
breaks the contract raises (or gets) ``rejections.FileRejected``: each broken rule once, with
its count and up to ``MAX_EXAMPLES`` example rows, their lines in the file and identifiers
masked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pandas as pd
import pandera.errors
import pyarrow as pa

from bdt_platform.feeds.contract_rules import FRAME_RULE_TESTS, RULE_COLUMNS, Rule, rules
from bdt_platform.feeds.csv_reader import LINE_NUMBERS
from bdt_platform.feeds.rejections import MAX_EXAMPLES, ContractFailure, FileRejected, mask_value
from bdt_platform.feeds.specs import ALL_SPECS, FeedSpec


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
        return [rejection(frame, spec, state, month) for frame, state, month in frames]
    combined = pd.concat([frame for frame, _, _ in frames], ignore_index=True)
    combined.attrs.clear()
    return validate_combined(combined, [(len(frame), state, month)
                                        for frame, state, month in frames],
                             lambda number: frames[number][0], spec)


def validate_combined(combined: pd.DataFrame, files: list[tuple[int, str, dt.date]],
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
    return [rejection(file_frame(number), spec, state, month) if number in suspects else None
            for number, (_, state, month) in enumerate(files)]


def warm_up() -> None:
    """Run every feed's contract once on an empty frame. Pandera imports its validation backends
    (and hypothesis's strategies, when hypothesis is installed) on its first ``validate``: ~0.3 s
    of CPU. The workers' fork server calls this once (``worker_start``), so that the workers
    forked from it do not each pay it on their first chunk."""
    for spec in ALL_SPECS.values():
        empty = pd.DataFrame({name: pd.arrays.ArrowExtensionArray(pa.array([], type=pa.string()))
                              for name in spec.input_columns})
        rejection(empty, spec, "", dt.date(2000, 1, 1))


def rejection(frame: pd.DataFrame, spec: FeedSpec, state: str, month: dt.date
              ) -> FileRejected | None:
    """``validate``'s rejection of ``frame``, or None when it meets the contract."""
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
        if str(context) == "DataFrameSchema" and name in FRAME_RULE_TESTS:
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


def _rule_for(context: object, column: object, number: object, check: object, schema) -> Rule:
    """Which contract rule a pandera failure belongs to (found by the check's position)."""
    column = column if isinstance(column, str) else None
    try:
        if str(context) == "Column" and column is not None:
            found = schema.columns[column].checks[int(number)]
            return Rule(found.name, column, found.error)
        if str(context) == "DataFrameSchema":
            found = schema.checks[int(number)]
            return Rule(found.name, RULE_COLUMNS.get(found.name), found.error)
    except (KeyError, IndexError, TypeError, ValueError):
        pass
    return Rule(str(check), column, str(check))  # not one of ours (schema-level)


def _failing_rows(rule: str, checked: pd.DataFrame) -> list[int]:
    """Every failing row of a cross-field rule (pandera only samples them,
    ``contract_rules.frame_rule``)."""
    keeps = FRAME_RULE_TESTS[rule](checked)
    return [int(i) for i in keeps.index[~keeps]]


def _failures_from_pandera(cases: pd.DataFrame, frame: pd.DataFrame, checked: pd.DataFrame,
                           spec: FeedSpec) -> list[ContractFailure]:
    schema = spec.contract.to_schema()
    order = {rule.name: position for position, rule in enumerate(rules(spec.contract))}
    lines = frame.attrs.get(LINE_NUMBERS)
    if lines is None or len(lines) != len(frame):
        lines = range(2, len(frame) + 2)  # a frame not read from a file: header + row number
    # A cross-field rule is reported once per column of each failing row: fold those together.
    grouped: dict[tuple[str, str | None], tuple[Rule, set[int]]] = {}
    keys = ["schema_context", "column", "check_number", "check"]
    for (context, column, number, check), group in cases.groupby(keys, sort=False, dropna=False):
        rule = _rule_for(context, column, number, check, schema)
        key = (rule.name, rule.column)
        if key in grouped and rule.name in FRAME_RULE_TESTS:
            continue  # the same cross-field rule, reported on another column
        _, indexes = grouped.setdefault(key, (rule, set()))
        if str(context) == "DataFrameSchema" and rule.name in FRAME_RULE_TESTS:
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
