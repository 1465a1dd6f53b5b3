"""The partner data contract, fast: every corpus case is rejected naming its rule and column,
good files (odd values and tolerated variants included) load verbatim, PII never shows.

No Dagster runs here: decode -> read_text_frame -> validate -> to_table, as the load asset does.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import time
from pathlib import Path

import pandas
import pyarrow as pa
import pytest

from bdt_platform.feeds import (contract_rules, contracts, csv_reader, decoding, rejections,
                                text_values, typed_table, validation)
from bdt_platform.feeds.casemgmt import CaseManagementDatabase
from bdt_platform.feeds.filenames import parse_drop_name
from bdt_platform.feeds.specs import (ALL_SPECS, CASEMGMT_SPECS, DATE, FILE_FEED_SPECS,
                                      TIMESTAMP, FeedSpec)
from bdt_platform.core.pii import TOKEN_PATTERN
from bdt_platform.synthetic import generate

from . import bad_files as bf

STATE, MONTH = "PA", dt.date(2024, 3, 1)
KEY = "unit-test-key"


def load(data: bytes, name: str, feed: str, state: str = STATE, month: dt.date = MONTH
         ) -> pa.Table:
    spec = FILE_FEED_SPECS[feed]
    frame = csv_reader.read_text_frame(decoding.decode(data, name), spec)
    validation.validate(frame, spec, state, month)
    return typed_table.to_table(frame, spec, state=state, month=month, source_file=name,
                                pii_key=KEY)


def rejection(data: bytes, name: str, feed: str, state: str = STATE,
              month: dt.date = MONTH) -> rejections.FileRejected:
    with pytest.raises(rejections.FileRejected) as caught:
        load(data, name, feed, state, month)
    return caught.value


def report_text(rejected: rejections.FileRejected) -> str:
    """Everything a rejection puts in front of people: summary and the reason file's failures."""
    return str(rejected) + json.dumps([f.as_dict() for f in rejected.failures],
                                      ensure_ascii=False, default=str)


# --- the corpus ------------------------------------------------------------------------------

@pytest.mark.parametrize("case", bf.CASES, ids=[case.id for case in bf.CASES])
def test_corpus_case_is_rejected_naming_rule_and_column(case: bf.Case):
    rejected = rejection(case.data(STATE, MONTH), case.filename(STATE, MONTH), case.feed)
    assert set(rejected.rules) == case.rules, [(f.rule, f.column) for f in rejected.failures]
    failure = next(f for f in rejected.failures if f.rule == case.rule)
    assert failure.column == case.column
    assert failure.count >= 1 and failure.message
    assert case.rule in str(rejected)
    assert len(failure.examples) <= rejections.MAX_EXAMPLES
    if case.rule not in contract_rules.FILE_RULES:
        # Row rules: each example names the file line and shows the masked value and row.
        assert failure.examples and failure.count == len(failure.examples)
        for example in failure.examples:
            assert example["line"] >= 2
            assert set(example["row"]) == set(FILE_FEED_SPECS[case.feed].input_columns)
            assert example["value"] == example["row"][case.column]
    assert not bf.leaked(report_text(rejected), bf.secrets(STATE, MONTH))


def test_corpus_covers_every_rule_of_every_file_feed():
    covered = {rule for case in bf.CASES for rule in case.rules}
    for feed in bf.FEEDS:
        names = {rule.name for rule in contract_rules.rules(FILE_FEED_SPECS[feed].contract)}
        assert names <= covered, f"{feed}: no corpus case for {sorted(names - covered)}"
        assert len([c for c in bf.CASES if c.feed == feed]) >= 5
    assert set(contract_rules.FILE_RULES) <= covered
    assert len(bf.CASES) >= 30


def test_rule_names_are_stable_readable_identifiers():
    for spec in [*FILE_FEED_SPECS.values(), *CASEMGMT_SPECS.values()]:
        rules = contract_rules.rules(spec.contract)
        names = [rule.name for rule in rules]
        assert len(names) == len(set(names)), spec.name
        for rule in rules:
            assert re.fullmatch(r"[a-z][a-z0-9_]+", rule.name), rule.name
            assert rule.column in spec.input_columns, rule
            assert rule.description and rule.description != rule.name
    assert all(re.fullmatch(r"[a-z][a-z0-9_]+", name) for name in contract_rules.FILE_RULES)


# --- what the reports say --------------------------------------------------------------------

def test_line_numbers_follow_the_file_across_multiline_values():
    # Row 2 of the good eligibility file starts on line 5: row 1's address spans lines 3-4.
    case = bf.CASES_BY_ID["date_of_birth_after_file_month"]
    rejected = rejection(case.data(STATE, MONTH), case.filename(STATE, MONTH), "eligibility")
    [example] = rejected.failures[0].examples
    assert example["line"] == 5
    assert example["row"]["first_name"] == "张伟"
    text = case.data(STATE, MONTH).decode()
    assert text.split("\n")[4].startswith("CC-PA-202403-0003,")


def test_field_count_errors_name_every_bad_line():
    rows = bf.good_rows("mailreturns", STATE, MONTH)
    text = bf.csv_text(rows, bf.columns("mailreturns")).split("\n")
    text[2] += ",extra"
    text[4] = text[4].rsplit(",", 1)[0]
    rejected = rejection("\n".join(text).encode(), "mailvendor_PA_202403_mailreturns.csv",
                         "mailreturns")
    [failure] = rejected.failures
    assert failure.rule == "field_count_matches_header" and failure.count == 2
    assert failure.examples == [{"line": 3, "fields": 5, "expected": 4},
                                {"line": 5, "fields": 3, "expected": 4}]


def test_line_numbers_count_blank_lines_with_either_line_ending():
    """A file of one-line records is read at once (``csv_reader._record_batches``); the lines it
    reports still count the blank lines skipped, with ``\n`` or ``\r\n`` line endings."""
    lines = bf.csv_text(bf.good_rows("mailreturns", STATE, MONTH),
                        bf.columns("mailreturns")).split("\n")
    lines.insert(2, "")  # line 3 is blank, ...
    lines.insert(3, "   ")  # ... and so is line 4
    lines[5] += ",extra"  # the 4th record, on line 6
    for ending in ("\n", "\r\n"):
        rejected = rejection(ending.join(lines).encode(), "mailvendor_PA_202403_mailreturns.csv",
                             "mailreturns")
        [failure] = rejected.failures
        assert failure.examples == [{"line": 6, "fields": 5, "expected": 4}], ending


def _batched_text(multi_line: bool = True) -> str:
    """Eligibility records, with blank lines and CRLF endings: one-line records over several
    batches, then (``multi_line``) the good rows again, one of them with a line break inside a
    value."""
    rows = bf.good_rows("eligibility", STATE, MONTH)
    body = bf.csv_text(rows, bf.columns("eligibility"), lineterminator="\r\n").split("\r\n")
    header, records = body[0], [line for line in body[1:] if line]
    one_line = [record for record in records if "\n" not in record]
    return "\r\n".join([header, *one_line, "", *one_line, "   ", *one_line,
                         *(records if multi_line else []), ""])


def test_a_big_file_is_read_a_batch_of_records_at_a_time(monkeypatch):
    """``read_text_columns`` turns at most ``READ_BATCH_ROWS`` records into Python objects at
    a time (a record's fields as Python strings take ~10x its bytes) and gives the same columns
    and lines as reading all at once: with one-line records only (read at once, batch by batch),
    and with a record holding a line break after the first batches (read record by record from
    its batch on), with blank lines, CRLF, and text pieces split anywhere."""
    spec = FILE_FEED_SPECS["eligibility"]
    for multi_line in (False, True):
        text = _batched_text(multi_line)
        monkeypatch.setattr(csv_reader, "READ_BATCH_ROWS", 16_384)
        whole, whole_lines = csv_reader.read_text_columns(text, spec)
        values = "".join(whole.column("address_line2").to_pylist())
        assert ("\n" in values) is multi_line
        monkeypatch.setattr(csv_reader, "READ_BATCH_ROWS", 3)
        for piece in (1, 5, 64):
            monkeypatch.setattr(decoding, "TEXT_PIECE", piece)
            batches = list(csv_reader._record_batches(text))
            assert len(batches) > 4 and max(len(rows) for rows, _ in batches) <= 3
            columns, lines = csv_reader.read_text_columns(text, spec)
            assert columns.equals(whole) and list(lines) == list(whole_lines), piece
        physical = text.count("\n")  # the file's lines (each ends in \r\n, or \n in a value)
        assert list(whole_lines)[-3:] == [physical - 2, physical - 1, physical]


def test_malformed_csv_after_the_first_batch_names_its_line(monkeypatch):
    lines = _batched_text().split("\r\n")
    bad = len(lines) - 3
    lines[bad] = lines[bad].replace(",", ',"unclosed', 1)
    monkeypatch.setattr(csv_reader, "READ_BATCH_ROWS", 2)
    rejected = rejection("\r\n".join(lines).encode(), "communitycare_PA_202403_eligibility.csv",
                         "eligibility")
    [failure] = rejected.failures
    line = "".join(part + "\r\n" for part in lines[:bad]).count("\n") + 1  # \n in values too
    assert failure.rule == "csv_well_formed" and failure.examples == [{"line": line}]


def test_every_failed_rule_is_reported_in_contract_order_with_counts():
    # 30 rows: each record id now appears five times.
    rows = [dict(row) for row in bf.good_rows("eligibility", STATE, MONTH) * 5]
    for row in rows:
        row["zip"] = "ABCDE"
    rows[0]["language"] = "EN"
    rejected = rejection(bf.csv_text(rows, bf.columns("eligibility")).encode(),
                         "communitycare_PA_202403_eligibility.csv", "eligibility")
    assert rejected.rules == ["record_id_unique", "zip_format", "language_iso_639_1"]
    counts = {f.rule: f.count for f in rejected.failures}
    assert counts == {"record_id_unique": 30, "zip_format": 30, "language_iso_639_1": 1}
    zip_failure = rejected.failures[1]
    assert len(zip_failure.examples) == rejections.MAX_EXAMPLES
    assert [e["line"] for e in zip_failure.examples[:3]] == [2, 3, 5]
    assert "more" not in str(rejected)  # three failures: all named in the summary


def test_examples_never_show_a_full_ssn():
    # Every row breaks a rule, so every SSN of the file is in an example row.
    rows = [dict(row, state="NJ") for row in bf.good_rows("eligibility", STATE, MONTH)]
    rows[0]["ssn"] = "219-09-8765"
    rows[3]["phone"] = "318274650"  # an SSN where the phone belongs
    rejected = rejection(bf.csv_text(rows, bf.columns("eligibility")).encode(),
                         "communitycare_PA_202403_eligibility.csv", "eligibility")
    text = report_text(rejected)
    assert not bf.leaked(text, bf.secrets(STATE, MONTH))
    state_failure = next(f for f in rejected.failures if f.rule == "state_matches_file_name")
    shown = [e["row"]["ssn"] for e in state_failure.examples]
    assert shown[0] == "***-**-8765" and shown[1] == ""
    assert all(re.fullmatch(r"\*{5}\d{4}", s) for s in shown[2:])
    assert state_failure.examples[3]["row"]["phone"] == "*****4650"
    assert state_failure.examples[0]["row"]["phone"] == "******0100"  # 10 digits: masked too


def test_a_missing_header_or_odd_column_name_does_not_leak_ssns():
    text = bf.csv_text(bf.good_rows("eligibility", STATE, MONTH), bf.columns("eligibility"))
    header, body = text.split("\n", 1)
    with_ssn_column = f"{header},219098765\n" + "\n".join(
        line + ",x" if line else line for line in body.split("\n"))
    rejected = rejection(with_ssn_column.encode(), "communitycare_PA_202403_eligibility.csv",
                         "eligibility")
    assert rejected.rules == ["no_unexpected_columns"]
    assert rejected.failures[0].column == "*****8765"
    assert not bf.leaked(report_text(rejected), bf.secrets(STATE, MONTH))


def test_recipient_key_examples_show_tokens_but_mask_anything_else():
    rows = [dict(row) for row in bf.good_rows("nudges", STATE, MONTH)]
    rows[1]["recipient_key"] = "427-36-1958"
    rows[2]["recipient_key"] = "Jane Doe 4273619"
    rejected = rejection(bf.csv_text(rows, bf.columns("nudges")).encode(),
                         "nudgevendor_PA_202403_nudges.csv", "nudges")
    [failure] = rejected.failures
    assert [e["value"] for e in failure.examples] == ["***-**-1958", "Jane Doe ***3619"]
    other = next(e for e in failure.examples if e["line"] == 3)
    assert other["row"]["recipient_key"] == "***-**-1958"


# --- what passes, and passes verbatim --------------------------------------------------------

@pytest.mark.parametrize("feed", bf.FEEDS)
def test_good_file_loads_with_odd_values_verbatim(feed):
    rows = bf.good_rows(feed, STATE, MONTH)
    table = load(bf.good_file(feed, STATE, MONTH), bf.filename(feed, STATE, MONTH), feed)
    assert table.num_rows == len(rows)
    loaded = table.to_pylist()
    spec = FILE_FEED_SPECS[feed]
    text_columns = [f.name for f in spec.arrow_schema if f.type == pa.string()
                    and f.name in spec.input_columns]
    for row, out in zip(rows, loaded):
        for column in text_columns:
            expected = None if (row[column] == "" and column in spec.optional) else row[column]
            assert out[column] == expected, (column, row[column], out[column])
        assert out["state"] == STATE and out["month"] == MONTH
    if feed == "eligibility":
        assert "ssn" not in table.column_names
        assert all(re.fullmatch(TOKEN_PATTERN, t) for t in table["person_token"].to_pylist())
        assert loaded[1]["last_name"] == "Robert'); DROP TABLE students;--"
        assert loaded[1]["address_line2"] == "Unit 4\nRear entrance"
        assert loaded[2]["first_name"] == "张伟" and loaded[2]["address_line2"] == "  "
        assert loaded[4]["first_name"] == "NULL"
        assert loaded[2]["date_of_birth"] == bf.last_day(MONTH)
        assert loaded[2]["monthly_income"] == pytest.approx(12345.678)
    if feed == "nudges":
        stamps = table["event_ts"].to_pylist()
        assert stamps[0] == dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
        # 22:30 at -05:00 on the file month's last day is in the file's month as written.
        assert stamps[4] == dt.datetime(2024, 4, 1, 3, 30, tzinfo=dt.timezone.utc)


def _variants(feed: str) -> dict[str, tuple[str, bytes]]:
    rows, names = bf.good_rows(feed, STATE, MONTH), bf.columns(feed)
    plain = bf.csv_text(rows, names)
    name = bf.filename(feed, STATE, MONTH)
    return {
        "bom": (name, b"\xef\xbb\xbf" + plain.encode()),
        "crlf": (name, bf.csv_text(rows, names, lineterminator="\r\n").encode()),
        "trailing_blank_lines": (name, (plain + "\n\n   \n").encode()),
        "blank_line_inside": (name, plain.replace("\n", "\n\n", 2).encode()),
        "columns_reordered": (name, bf.csv_text(rows, list(reversed(names))).encode()),
        "header_padded": (name, plain.replace(",", " , ", len(names) - 1).encode()),
        "gzip": (bf.filename(feed, STATE, MONTH, gz=True), bf.gzip_bytes(plain.encode())),
        "gzip_bom_crlf": (bf.filename(feed, STATE, MONTH, gz=True), bf.gzip_bytes(
            b"\xef\xbb\xbf" + bf.csv_text(rows, names, lineterminator="\r\n").encode())),
    }


@pytest.mark.parametrize("feed", bf.FEEDS)
def test_tolerated_variants_load_the_same_rows(feed):
    baseline = load(bf.good_file(feed, STATE, MONTH), bf.filename(feed, STATE, MONTH), feed)
    baseline = baseline.drop_columns(["_source_file"])
    for variant, (name, data) in _variants(feed).items():
        table = load(data, name, feed).drop_columns(["_source_file"])
        assert table.equals(baseline), variant


@pytest.mark.parametrize("feed", bf.FEEDS)
def test_header_only_file_is_valid_and_empty(feed):
    data = (",".join(bf.columns(feed)) + "\r\n").encode()
    assert load(data, bf.filename(feed, STATE, MONTH), feed).num_rows == 0


def test_rules_at_month_boundaries():
    # Decisions may be from any earlier month; events only from the file's own month.
    rows = [dict(row) for row in bf.good_rows("outcomes", STATE, MONTH)]
    rows[0]["decision_date"] = "1999-01-01"
    assert load(bf.csv_text(rows, bf.columns("outcomes")).encode(),
                "statehhs_PA_202403_outcomes.csv", "outcomes").num_rows == 6
    december = dt.date(2023, 12, 1)
    rows = [dict(row) for row in bf.good_rows("nudges", STATE, december)]
    rows[0]["event_ts"] = "2023-12-31T23:59:59.999999+14:00"
    assert load(bf.csv_text(rows, bf.columns("nudges")).encode(),
                "nudgevendor_PA_202312_nudges.csv", "nudges", month=december).num_rows == 6
    rows[0]["event_ts"] = "2024-01-01T00:00:00+00:00"
    assert rejection(bf.csv_text(rows, bf.columns("nudges")).encode(),
                     "nudgevendor_PA_202312_nudges.csv", "nudges",
                     month=december).rules == ["event_ts_within_file_month"]


def test_generated_files_meet_the_contract(tmp_path: Path):
    months = [dt.date(2024, 1, 1), dt.date(2024, 2, 1)]
    summary = generate(tmp_path / "inbox", tmp_path / "cm.sqlite", states=["DC", "NM"],
                       months=months, scale=0.15, seed=11, pii_key=KEY)
    for path in summary.files:
        drop = parse_drop_name(path.parent.name, path.name)
        table = load(path.read_bytes(), path.name, drop.feed, drop.state, drop.month)
        assert table.num_rows >= 0
    database = CaseManagementDatabase(url=f"sqlite:///{tmp_path / 'cm.sqlite'}")
    for spec in CASEMGMT_SPECS.values():
        for state in ["DC", "NM"]:
            for month in months:
                frame = database.extract(spec.name, spec.input_columns, state, month)
                validation.validate(frame, spec, state, month)
                typed_table.to_table(frame, spec, state=state, month=month,
                                     source_file=f"casemgmt.{spec.name}", pii_key=KEY)


def test_one_casemgmt_query_per_month_gives_each_partition_its_own_rows(tmp_path: Path):
    """The extract reads a month for many states in one query; each state's frame must be
    exactly what a query for that one partition returns (rows, order, text), and a state
    without activity gets an empty frame with the contract's columns."""
    import sqlite3

    import pandas as pd

    months = [dt.date(2024, 1, 1), dt.date(2024, 2, 1)]
    generate(tmp_path / "inbox", tmp_path / "cm.sqlite", states=["DC", "NM", "VT"],
             months=months, scale=0.15, seed=5, pii_key=KEY)
    database = CaseManagementDatabase(url=f"sqlite:///{tmp_path / 'cm.sqlite'}")
    plain = sqlite3.connect(tmp_path / "cm.sqlite")
    for spec in CASEMGMT_SPECS.values():
        time_column = {"clients": "created_at", "applications": "submitted_at",
                       "calls": "started_at"}[spec.name]
        for month in months:
            frames = database.extract_month(spec.name, spec.input_columns, month,
                                            ["DC", "NM", "VT", "WY"])
            assert list(frames) == ["DC", "NM", "VT", "WY"]
            for state in ["DC", "NM", "VT"]:
                expected = pd.read_sql(
                    f"SELECT {', '.join(spec.input_columns)} FROM {spec.name} WHERE state = ? "
                    f"AND {time_column} >= ? AND {time_column} < ? ORDER BY 1", plain,
                    params=[state, month.isoformat(),
                            dt.date(2024, month.month + 1, 1).isoformat()])
                expected = expected.astype(object).where(expected.notna(), "").astype(str)
                assert len(expected) > 0
                pd.testing.assert_frame_equal(frames[state], expected)
            assert frames["WY"].empty and list(frames["WY"].columns) == spec.input_columns
    plain.close()


def test_an_archived_extract_is_the_csv_pandas_writes_and_reads_back_the_same(tmp_path: Path):
    """The lake keeps each case-management extract as CSV (explain and ``--as-of`` read it
    back). It is written with the csv module, not ``DataFrame.to_csv``: the bytes must be the
    same as pandas' (so archives written before and after are named alike), for real extracts
    and for values that need quoting, and they must read back to the same text."""
    import io

    import pandas as pd

    from bdt_platform.feeds.casemgmt import _csv_bytes

    months = [dt.date(2024, 1, 1)]
    generate(tmp_path / "inbox", tmp_path / "cm.sqlite", states=["DC", "NM"], months=months,
             scale=0.15, seed=5, pii_key=KEY)
    database = CaseManagementDatabase(url=f"sqlite:///{tmp_path / 'cm.sqlite'}")
    frames = [frame for spec in CASEMGMT_SPECS.values()
              for frame in database.extract_month(spec.name, spec.input_columns, months[0],
                                                  ["DC", "NM", "WY"]).values()]
    frames.append(pd.DataFrame({"note": ["a,b", 'say "hi"', "two\nlines", "", " x ", "é ü 中"],
                                "n": ["1", "2", "3", "4", "5", "6"]}))
    assert any(frame.empty for frame in frames) and sum(len(frame) for frame in frames) > 20
    for frame in frames:
        written = _csv_bytes(frame)
        assert written == frame.to_csv(index=False).encode()
        back = pd.read_csv(io.BytesIO(written), dtype=str, keep_default_na=False)
        pd.testing.assert_frame_equal(back, frame.reset_index(drop=True), check_dtype=False)
    # A lone carriage return is written as pandas writes it (pandas does not read it back).
    carriage = pd.DataFrame({"note": ["cr\rhere"]})
    assert _csv_bytes(carriage) == carriage.to_csv(index=False).encode()


def test_a_column_holding_anything_but_text_is_rejected():
    """Columns are checked as text for the whole column at once (``contracts.Text``); a
    value that is not a string still fails the dtype rule, and a null the nullable rule."""
    import numpy as np

    spec = CASEMGMT_SPECS["calls"]
    frame = csv_reader.read_text_frame(
        "call_id,client_id,state,started_at,duration_s,outcome,updated_at\n"
        "C1,CL1,PA,2024-03-01 10:00:00+00:00,60,completed,2024-03-01T10:01:00Z\n"
        "C2,CL2,PA,2024-03-01 11:00:00+00:00,15,completed,2024-03-01T11:01:00Z\n", spec)
    validation.validate(frame, spec, "PA", MONTH)
    for value, rule in [(15, "dtype('str')"), (np.nan, "not_nullable"), (None, "not_nullable")]:
        broken = frame.astype(object)  # as a database extract holds it: any Python value
        broken.loc[1, "duration_s"] = value
        with pytest.raises(rejections.FileRejected) as caught:
            validation.validate(broken, spec, "PA", MONTH)
        assert rule in caught.value.rules


def test_casemgmt_rows_are_checked_with_named_rules():
    spec = CASEMGMT_SPECS["calls"]
    frame = csv_reader.read_text_frame(
        "call_id,client_id,state,started_at,duration_s,outcome,updated_at\n"
        "C1,CL1,PA,2024-03-01 10:00:00+00:00,60,completed,2024-03-01T10:01:00Z\n"
        "C1,CL2,NJ,2024-03-01T10:00:00,1.5,,2024-03-01T10:01:00Z\n", spec)
    with pytest.raises(rejections.FileRejected) as caught:
        validation.validate(frame, spec, "PA", MONTH)
    assert set(caught.value.rules) == {"call_id_unique", "started_at_is_timestamp",
                                       "duration_s_whole_seconds", "outcome_not_blank",
                                       "state_matches_partition"}


def test_check_description_lists_every_rule():
    from bdt_platform.feeds.file_assets import FILE_FEED_ASSETS

    for asset in FILE_FEED_ASSETS:
        [spec] = list(asset.check_specs)
        feed = asset.key.path[-1]
        for rule in [*contract_rules.FILE_RULES,
                     *(r.name for r in contract_rules.rules(FILE_FEED_SPECS[feed].contract))]:
            assert f"`{rule}`" in spec.description, (feed, rule)
        assert "quarantine" in spec.description



def test_summary_counts_what_each_rule_counts():
    def summary(case_id: str) -> str:
        case = bf.CASES_BY_ID[case_id]
        return str(rejection(case.data(STATE, MONTH), case.filename(STATE, MONTH), case.feed))

    assert summary("latin1_encoded") == "utf8_encoding (3 lines)"
    assert summary("column_missing") == "required_columns_present on phone (1 column)"
    assert summary("broken_gzip") == "gzip_readable"
    assert summary("record_id_duplicated") == "record_id_unique on record_id (2 rows)"


def test_cross_field_rule_counts_every_row_and_stays_fast_on_big_files():
    # pandera samples failing dataframe-level checks (its reshape is quadratic); the count and
    # the examples must still cover every failing row, in file order.
    base = bf.good_rows("outcomes", STATE, MONTH)
    rows = []
    for i in range(6000):
        row = dict(base[i % len(base)], application_id=f"APP-{i}")
        if i % 3 == 0:
            row.update(decision="denied", monthly_benefit_usd="10.00")
        rows.append(row)
    data = bf.csv_text(rows, bf.columns("outcomes")).encode()
    started = time.perf_counter()
    rejected = rejection(data, "statehhs_PA_202403_outcomes.csv", "outcomes")
    assert time.perf_counter() - started < 20  # was minutes before sampling
    [failure] = rejected.failures
    assert (failure.rule, failure.column, failure.count) == (
        "benefit_only_when_approved", "monthly_benefit_usd", 2000)
    assert [e["line"] for e in failure.examples] == [2 + 3 * k for k in range(20)]
    assert all(e["row"]["decision"] == "denied" for e in failure.examples)


# ---------------------------------------------------------------------------------------------
# Many files in one pandera call (validation.validate_many) must judge each file as if alone.

def _frame(data: bytes, name: str, feed: str):
    return csv_reader.read_text_frame(decoding.decode(data, name), FILE_FEED_SPECS[feed])


def _pandera_level_cases():
    for case in bf.CASES:
        try:
            frame = _frame(case.data(STATE, MONTH), case.filename(STATE, MONTH), case.feed)
        except rejections.FileRejected:
            continue  # rejected before pandera: never reaches validate_many
        yield pytest.param(case, frame, id=case.id)


@pytest.mark.parametrize(("case", "bad_frame"), list(_pandera_level_cases()))
def test_validating_many_files_at_once_judges_each_as_if_alone(case: bf.Case, bad_frame):
    spec = FILE_FEED_SPECS[case.feed]
    other_month = dt.date(2024, 2, 1)
    # Neighbours: good files of other partitions. The second reuses the first's rows verbatim
    # except state/dates, so identifiers repeat across files (allowed: unique *within* a file).
    before = _frame(bf.good_file(case.feed, STATE, other_month),
                    bf.filename(case.feed, STATE, other_month), case.feed)
    after = _frame(bf.good_file(case.feed, "NJ", MONTH), bf.filename(case.feed, "NJ", MONTH),
                   case.feed)
    alone = validation.validate_many([(bad_frame, STATE, MONTH)], spec)[0]
    assert alone is not None, "the corpus case must break a pandera rule"
    together = validation.validate_many(
        [(before, STATE, other_month), (bad_frame, STATE, MONTH), (after, "NJ", MONTH),
         (before.copy(), STATE, other_month.replace(month=1))], spec)
    assert together[0] is None and together[2] is None
    assert together[1] is not None
    assert [f.as_dict() for f in together[1].failures] == [f.as_dict() for f in alone.failures]
    # The fourth is the first file's rows claimed for January: dates outside that month or
    # not, it is judged exactly as validating it alone judges it.
    solo_fourth = validation.validate_many([(before.copy(), STATE, other_month.replace(month=1))],
                                           spec)[0]
    assert (together[3] is None) == (solo_fourth is None)


def test_identifiers_may_repeat_across_files_but_not_within_one():
    spec = FILE_FEED_SPECS["mailreturns"]
    frame = _frame(bf.good_file("mailreturns", STATE, MONTH),
                   bf.filename("mailreturns", STATE, MONTH), "mailreturns")
    doubled = frame.iloc[[0, 1, 0]].reset_index(drop=True)  # row 0 twice in one file
    verdicts = validation.validate_many(
        [(frame, STATE, MONTH), (frame.copy(), "NJ", MONTH), (doubled, "NY", MONTH)], spec)
    assert verdicts[0] is None and verdicts[1] is None
    assert verdicts[2] is not None and verdicts[2].rules == ["mail_piece_id_unique"]
    assert verdicts[2].failures[0].count == 2


# ---------------------------------------------------------------------------------------------
# Rules and typing read whole columns (RE2 via pyarrow, numpy); they must judge and parse every
# value exactly as the per-value Python they replaced, kept here as the reference.

REF_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
REF_TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}"
                           r"(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:?[0-9]{2})$")
REF_DECIMAL = r"^-?[0-9]+(\.[0-9]+)?$"
REF_SSN_INSIDE = re.compile(r"\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4}|(?<!\d)\d{9}(?!\d)")


def ref_date(value: object) -> dt.date | None:
    if not isinstance(value, str) or not REF_DATE.match(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def ref_timestamp(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not REF_TIMESTAMP.match(value):
        return None
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else None


def ref_utc(value: object) -> dt.datetime | None:
    stamp = ref_timestamp(value)
    return None if stamp is None else stamp.astimezone(dt.timezone.utc)


def ref_fits_utc(value: object) -> bool:
    try:
        ref_utc(value)
    except OverflowError:
        return False
    return True


def ref_codes(text: str) -> list[str]:
    return text.split(";") if text != "" else []


def ref_next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _full(pattern: str, *, optional: bool = False):
    return lambda v: (optional and v == "") or bool(re.fullmatch(pattern, v))


# Every rule that reads text with a pattern or a parser, by name (column rules: by suffix too).
REFERENCE_RULES = {
    "ssn_9_digits_or_empty": _full(r"[0-9]{9}", optional=True),
    "zip_format": _full(r"[0-9]{5}(-[0-9]{4})?"),
    "zip_format_or_empty": _full(r"[0-9]{5}(-[0-9]{4})?", optional=True),
    "phone_10_digits_or_empty": _full(r"[0-9]{10}", optional=True),
    "recipient_key_is_person_token": _full(TOKEN_PATTERN[1:-1]),
    "duration_s_whole_seconds": _full(r"[0-9]+"),
    "household_size_1_to_20": lambda v: bool(re.fullmatch(r"[0-9]{1,2}", v)) and 1 <= int(v) <= 20,
    "_is_date": lambda v: ref_date(v) is not None,
    "_is_timestamp": lambda v: ref_timestamp(v) is not None and ref_fits_utc(v),
    "_is_decimal": lambda v: bool(re.fullmatch(REF_DECIMAL, v)),
    "_not_negative": lambda v: not re.fullmatch(REF_DECIMAL, v) or not v.startswith("-"),
    "_has_no_ssn": lambda v: not REF_SSN_INSIDE.search(v),
    "_known_codes": lambda v: all(code in contracts.PROGRAMS for code in ref_codes(v)),
    "_no_duplicates": lambda v: len(set(ref_codes(v))) == len(ref_codes(v)),
    "_not_blank": lambda v: v.strip() != "",
}
REFERENCE_FRAME_RULES = {
    "date_of_birth_between_1900_and_file_month": lambda r: (
        (d := ref_date(r["date_of_birth"])) is None
        or dt.date(1900, 1, 1) <= d < ref_next_month(r["month"])),
    "decision_date_within_or_before_file_month": lambda r: (
        (d := ref_date(r["decision_date"])) is None or d < ref_next_month(r["month"])),
    "status_date_on_or_after_mailed_date": lambda r: (
        (a := ref_date(r["status_date"])) is None or (b := ref_date(r["mailed_date"])) is None
        or a >= b),
    "event_ts_within_file_month": lambda r: (
        (t := ref_timestamp(r["event_ts"])) is None
        or (t.year, t.month) == (r["month"].year, r["month"].month)),
}

ADVERSARIAL = [
    "", " ", "  ", "\n", "\t", "x", "2024-03-01", " 2024-03-01", "2024-03-01 ", "2024-03-01\n",
    "\n2024-03-01", "２０２４-０３-０１", "٢٠٢٤-٠٣-٠١", "2024-02-29", "2023-02-29", "2024-02-30",
    "2024-2-5", "2024-02-5", "0000-01-01", "0001-01-01", "9999-12-31", "10000-01-01",
    "2024-13-01", "2024-00-10", "2024-01-00", "2024-01-32", "2024-04-31", "1900-02-29",
    "2000-02-29", "2024-03-01T10:00:00Z", "2024-03-01T10:00Z", "2024-03-01 10:00:00+0000",
    "2024-03-01T10:00:00+00:00", "2024-03-01T10:00:00-05:00", "2024-03-01T10:00:00",
    "2024-03-01T10:00", "2024-03-01T10:00:00.5Z", "2024-03-01T10:00:00.123456+01:00",
    "2024-03-01T10:00:00.1234567-05:00", "2024-03-01T10:00:00.999999999999Z",
    "2024-03-01T10:00:00.Z", "2024-03-01T10:00:00,5Z", "2024-03-01T10:00:00Z\n",
    "2024-03-01T10:00:00z", "2024-03-01t10:00:00Z", "2024-03-01T24:00:00Z", "2024-03-01T23:60Z",
    "2024-03-01T23:59:60Z", "2024-03-01T10:00+23:59", "2024-03-01T10:00+24:00",
    "2024-03-01T10:00+00:60", "2024-03-01T10:00-00:99", "2024-03-01T10:00+2359",
    "2024-03-01T10:00+23:99", "2024-03-01T10:00+5:00", "2024-03-01T10:00+05",
    "2024-03-31T22:00-05:00", "2024-04-01T01:00+05:00", "2024-02-30T10:00Z", "0000-12-31T23:00Z",
    "0001-01-01T00:00Z",
    "0001-01-01T00:00-01:00", "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59+01:00",
    "0001-01-01T00:59:59.999999+01:00", "9999-12-31T23:00-01:00",  # UTC in year 0 / 10000
    "２０２４-０３-０１T10:00Z", "2024-03-01T１０:00Z", "0", "00", "01", "1", "9", "10", "19", "20",
    "21", "99", "100", "007", "-0", "-1", "-1.5", "1.", ".5", "1.5", "+1", "1e3", "1,000", "$5",
    "１２", "12.50", "-0.00", "--1", "SNAP", "SNAP;WIC", "SNAP;;WIC", "SNAP;", ";SNAP", ";", ";;",
    "SNAP;SNAP", "snap", "SNAP; WIC", " SNAP", "EXTRA_HELP;MSP;MEDICAID", "WIC;X;X", "LIHEAP\n",
    "123-45-6789", "x123456789y", "1234567890", "12345678", "123 45 6789", "123456789",
    "a123456789", "123456789a", "１２３-４５-６７８９", "１２３４５６７８９", "x１２３４５６７８９",
    "١٢٣٤٥٦٧٨٩", "é123456789", "123456789é", "é1234567890", "12345٦789", "000000000",
    "12345", "12345-6789", "12345-678", "2155550100", "tok_" + "0a" * 16, "tok_" + "A" * 32,
    "tok_" + "a" * 32 + "\n", "tok_" + "a" * 31, "tok_" + "a" * 33, "\u200b", "\u3000",
    "\u00a0", "\x1c\x1f", "\x85", "\u2028 ", " x ", "\tx", "\u3000\u200b", "\r\n", "\x0b\x0c",
]
DIGITS = "0123456789" * 6 + "０１２３４５６７８９" + "٠١٢٣٤٥٦٧٨٩" + "०१२३४५६७८९"
ALPHABET = DIGITS + "-:T tZz+.,;\n\x0bé_" + "SNAPWIC"


def _two(n: int) -> str:
    return f"{n:02d}"


def _random_date(draw: random.Random) -> str:
    year = draw.choice([0, 1, 2, 1899, 1900, 1969, 1970, 2000, 2023, 2024, 2100, 9998, 9999,
                        draw.randrange(10000)])
    return f"{year:04d}-{_two(draw.randrange(14))}-{_two(draw.randrange(33))}"


def _random_timestamp(draw: random.Random) -> str:
    text = (_random_date(draw) + draw.choice("TT t") + _two(draw.randrange(26)) + ":"
            + _two(draw.randrange(62)))
    if draw.random() < 0.7:
        text += ":" + _two(draw.randrange(62))
        if draw.random() < 0.5:
            text += "." + "".join(draw.choice("0123456789") for _ in range(draw.randrange(1, 13)))
    hours, minutes = draw.choice([0, 1, 5, 12, 14, 23, 24, 99]), draw.choice([0, 30, 59, 60, 99])
    return text + draw.choice(["Z", "", f"+{_two(hours)}:{_two(minutes)}",
                               f"-{_two(hours)}{_two(minutes)}", f"+{_two(hours)}"])


def _mutated(draw: random.Random, text: str) -> str:
    """One character inserted, dropped or replaced (sometimes a full-width or Arabic digit)."""
    at = draw.randrange(len(text) + 1)
    new = draw.choice(ALPHABET)
    return draw.choice([text[:at] + new + text[at:], text[:at] + text[at + 1:],
                        text[:at] + new + text[at + 1:]])


def _random_value(draw: random.Random) -> str:
    kind = draw.randrange(8)
    if kind == 0:
        return "".join(draw.choice(ALPHABET) for _ in range(draw.randrange(25)))
    if kind == 1:
        return "".join(draw.choice(DIGITS + " -x") for _ in range(draw.randrange(8, 14)))
    if kind == 2:
        return ";".join(draw.choice([*contracts.PROGRAMS, "", "snap", "X"])
                        for _ in range(draw.randrange(4)))
    if kind == 3:
        return draw.choice(["", "-"]) + "".join(draw.choice("0123456789.") for _ in range(4))
    text = _random_date(draw) if kind == 4 else _random_timestamp(draw)
    return _mutated(draw, text) if draw.random() < 0.3 else text


def adversarial_values(n: int = 6000, seed: int = 20240301) -> list[str]:
    draw = random.Random(seed)
    return ADVERSARIAL + [_random_value(draw) for _ in range(n)]


def _column_checks():
    """(rule name, pandera check, reference) for every column rule of every contract that has
    a reference above."""
    for spec in ALL_SPECS.values():
        for column in spec.contract.to_schema().columns.values():
            for check in column.checks:
                key = next((k for k in REFERENCE_RULES
                            if check.name == k or (k[0] == "_" and check.name.endswith(k))), None)
                if key is not None:
                    yield check.name, check, REFERENCE_RULES[key]


def test_column_rules_judge_every_value_as_the_per_value_reference():
    values = adversarial_values()
    column = pandas.Series(values, dtype=object)
    checked = set()
    for name, check, reference in _column_checks():
        got = check(column).check_output.tolist()
        expected = [reference(v) for v in values]
        wrong = [v for v, a, b in zip(values, got, expected) if a != b]
        assert not wrong, (name, wrong[:10])
        checked.add(name)
    assert {"ssn_9_digits_or_empty", "zip_format", "phone_10_digits_or_empty",
            "recipient_key_is_person_token", "duration_s_whole_seconds",
            "household_size_1_to_20", "date_of_birth_is_date", "event_ts_is_timestamp",
            "monthly_income_is_decimal", "monthly_benefit_usd_not_negative",
            "campaign_id_has_no_ssn", "programs_enrolled_known_codes",
            "programs_eligible_no_duplicates", "first_name_not_blank"} <= checked


def test_values_that_are_not_text_are_neither_dates_nor_timestamps():
    values = [*ADVERSARIAL[:40], None, float("nan"), 15, 1.5, dt.date(2024, 3, 1)]
    column = pandas.Series(values, dtype=object)
    assert list(text_values.parse_dates(column).astype(object)) == [ref_date(v) for v in values]
    assert list(text_values.parse_timestamps(column).local.astype(object)) == [
        None if t is None else t.replace(tzinfo=None) for t in map(ref_timestamp, values)]


def test_dates_and_timestamps_parse_as_the_per_value_reference():
    values = adversarial_values()
    column = pandas.Series(values, dtype=object)
    assert list(text_values.parse_dates(column).astype(object)) == [ref_date(v) for v in values]
    stamps = text_values.parse_timestamps(column)
    expected_local = [None if t is None else t.replace(tzinfo=None)
                      for t in map(ref_timestamp, values)]
    assert list(stamps.local.astype(object)) == expected_local
    for value, utc in zip(values, stamps.utc):
        try:
            expected = ref_utc(value)
        except OverflowError:
            continue  # no Python datetime for it: loading it fails (see the next test)
        expected = None if expected is None else expected.replace(tzinfo=None)
        assert utc.astype(object) == expected, value


def test_a_pattern_that_reads_differently_in_re2_is_refused():
    for pattern in (r"\d{5}", r"\w+", r"(?<![0-9])[0-9]{9}", r"[0-9]{5}(?!-)"):
        with pytest.raises(ValueError):
            contract_rules.matches("zip", "zip_probe", pattern, "probe")


def _probe_spec() -> FeedSpec:
    return FeedSpec(name="probe", description="", contract=contracts.FileContract,
                    fields=(("d", DATE), ("t", TIMESTAMP)))


def _outcome(load):
    """What ``load()`` returns, or the type of the exception it raises."""
    try:
        return load()
    except Exception as exc:  # noqa: BLE001 - which exception is the point
        return type(exc)


def test_typed_dates_and_timestamps_are_the_per_value_reference():
    values = adversarial_values()
    loadable, overflowing = [], []
    for value in values:
        try:
            ref_utc(value)
            loadable.append(value)
        except OverflowError:
            overflowing.append(value)
    # A UTC instant outside years 1..9999: loading fails as before (the value alone, too).
    assert len(overflowing) >= 2
    for value in overflowing:
        frame = pandas.DataFrame({"d": [value], "t": [value]})
        assert _outcome(lambda: typed_table.to_table(
            frame, _probe_spec(), state=STATE, month=MONTH, source_file="f.csv",
            pii_key=KEY)) is OverflowError, value
    frame = pandas.DataFrame({"d": loadable, "t": loadable})
    table = typed_table.to_table(frame, _probe_spec(), state=STATE, month=MONTH,
                                 source_file="f.csv", pii_key=KEY)
    assert table.column("d").to_pylist() == [ref_date(v) for v in loadable]
    assert table.column("t").to_pylist() == [ref_utc(v) for v in loadable]


def _month_edges(month: dt.date) -> list[str]:
    """Dates and timestamps just inside and just outside ``month``."""
    first, after = month.replace(day=1), ref_next_month(month)
    last = after - dt.timedelta(days=1)
    days = [first - dt.timedelta(days=1), first, last, after]
    return [*(d.isoformat() for d in days), "1900-01-01", "1899-12-31",
            f"{first}T00:00Z", f"{first}T00:00:00+05:00", f"{last}T23:59:59.999999Z",
            f"{last}T22:00-05:00", f"{after}T00:00Z", f"{after} 01:00+05:00"]


def test_cross_field_rules_judge_every_row_as_the_per_value_reference():
    draw = random.Random(7)
    values = adversarial_values(3000)
    months = [dt.date(2024, 1, 1), dt.date(2024, 3, 1), dt.date(2024, 12, 1), dt.date(1900, 1, 1),
              dt.date(2024, 3, 15)]
    rows = [{"date_of_birth": v, "decision_date": draw.choice(values), "status_date": v,
             "mailed_date": draw.choice(values), "event_ts": draw.choice(values),
             "month": draw.choice(months)} for v in values]
    rows += [{"date_of_birth": a, "decision_date": a, "status_date": a, "mailed_date": b,
              "event_ts": a, "month": month}
             for month in months for a in _month_edges(month) for b in _month_edges(month)]
    frame = pandas.DataFrame(rows).assign(
        file_month=lambda f: f["month"].map(dt.date.isoformat), file_state=STATE)
    for name, reference in REFERENCE_FRAME_RULES.items():
        got = contract_rules.FRAME_RULE_TESTS[name](frame).tolist()
        wrong = [row for row, a in zip(rows, got) if a != reference(row)]
        assert not wrong, (name, wrong[:5])


def test_benefit_rule_leaves_values_that_are_not_decimal_text_to_the_other_rules():
    """``benefit_only_when_approved`` judges decimal text only: a missing value or one that is
    not text is the not-null and dtype rules' to report, never a TypeError inside this one."""
    values = [None, float("nan"), 5, 0.0, "5", "0", "0.00", "x", "-1"]
    frame = pandas.DataFrame({"decision": ["denied"] * len(values),
                              "monthly_benefit_usd": pandas.Series(values, dtype=object)})
    judged = contract_rules.FRAME_RULE_TESTS["benefit_only_when_approved"](frame).tolist()
    assert judged == [True, True, True, True, False, True, True, True, False]
    approved = frame.assign(decision="approved")
    assert contract_rules.FRAME_RULE_TESTS["benefit_only_when_approved"](approved).all()


def test_a_file_is_read_as_arrow_text_that_rules_and_tables_use_without_converting():
    """``read_text_frame`` gives each column as Arrow-backed text holding exactly what the csv
    module reads (quotes, commas, empty strings, any script), the rules read that Arrow array
    itself (same buffers: nothing converted per rule), and a file that passes loads the same
    values whichever way its frame was held (Arrow-backed, or Python objects as a database
    extract gives them)."""
    import csv
    import io

    spec = ALL_SPECS["eligibility"]
    data = bf.good_file("eligibility", "PA", MONTH)
    text = decoding.decode(data, "communitycare_PA_202403_eligibility.csv")
    frame = csv_reader.read_text_frame(text, spec)
    header, *rows = list(csv.reader(io.StringIO(text, newline="")))
    for name in spec.input_columns:
        assert isinstance(frame[name].dtype, pandas.ArrowDtype), name
        column = text_values.as_text(frame[name])
        assert column.to_pylist() == [row[header.index(name)] for row in rows], name
        own = text_values.arrow_array(frame[name])
        assert column.buffers()[2].address == own.buffers()[2].address, name
    validation.validate(frame, spec, "PA", MONTH)
    as_objects = frame.astype(object)
    assert not any(isinstance(dtype, pandas.ArrowDtype) for dtype in as_objects.dtypes)
    validation.validate(as_objects, spec, "PA", MONTH)
    tables = [typed_table.to_table(f, spec, state="PA", month=MONTH, source_file="f.csv",
                                   pii_key=bf.TOKEN_KEY) for f in (frame, as_objects)]
    assert tables[0].equals(tables[1]) and tables[0].num_rows == len(rows)


def test_control_bytes_are_found_wherever_they_are_in_a_file(monkeypatch):
    """``decoded`` looks for control characters a piece of the file at a time
    (``decoding._has_control_bytes``): every byte value, at every place around the pieces'
    edges, is found exactly when it is one of ``_CONTROL_BYTES`` (tab, line feed and carriage
    return are text)."""
    import re

    monkeypatch.setattr(decoding, "TEXT_PIECE", 4)
    control = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
    for value in range(256):
        for place in range(10):
            data = bytearray(b"abcdefghij")
            data[place] = value
            assert decoding._has_control_bytes(bytes(data)) == bool(control.search(data)), \
                (value, place)
    assert not decoding._has_control_bytes(b"")
