"""The corpus of malformed partner files, as code.

Every case takes a small, hand-written, contract-true file of one feed for a given state and month
(``good_rows``: varied, with odd but valid values - quotes, commas, SQL fragments, non-Latin
scripts, a value spanning two lines, boundary dates and numbers) and breaks exactly one rule of
the contract, by editing its rows, its text or its bytes. ``Case.rule``/``Case.column`` is what the
rejection must name; ``Case.also`` lists the rules a case cannot help breaking too (a renamed
column is both missing and unexpected).

Built per (state, month), so one ingest can hold the whole corpus, each case in its own partition.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
from collections.abc import Callable
from dataclasses import dataclass

from bdt_platform.feeds.filenames import drop_filename
from bdt_platform.synthetic.partners import feed_partners
from bdt_platform.feeds.specs import FILE_FEED_SPECS
from bdt_platform.core.partitions import STATES, add_months
from bdt_platform.core.pii import person_token

FEEDS = ("eligibility", "outcomes", "mailreturns", "nudges")
TOKEN_KEY = "corpus-token-key"
# SSNs the mutations put where they do not belong (each also appears dashed: 219-09-8765).
INJECTED_SSNS = ("219098765", "318274650", "427361958")

Rows = list[dict[str, str]]


def columns(feed: str) -> list[str]:
    return FILE_FEED_SPECS[feed].input_columns


def last_day(month: dt.date) -> dt.date:
    return add_months(month, 1) - dt.timedelta(days=1)


def ssn_for(state: str, month: dt.date, i: int) -> str:
    """The SSN of row ``i`` of the good eligibility file of a partition (unique per partition)."""
    return f"{101 + i:03d}{10 + STATES.index(state):02d}{month.year % 100:02d}{month.month:02d}"


def ssns_in_good_files(state: str, month: dt.date) -> set[str]:
    return {row["ssn"] for row in good_rows("eligibility", state, month) if row["ssn"]}


# ---------------------------------------------------------------------------------------------
# Contract-true files

def good_rows(feed: str, state: str, month: dt.date) -> Rows:
    """A small contract-true file of ``feed`` for ``state`` and ``month`` as rows of text."""
    return {"eligibility": _eligibility, "outcomes": _outcomes, "mailreturns": _mailreturns,
            "nudges": _nudges}[feed](state, month)


def _eligibility(state: str, month: dt.date) -> Rows:
    tag, last = f"{state}-{month:%Y%m}", last_day(month)
    people = [
        dict(first_name="Maria", last_name="García López", date_of_birth="1961-07-04",
             address_line1="12 Elm St", address_line2="Apt 2", city="Springfield", zip="19103",
             phone="2155550100", email="maria@example.org", language="es", household_size="3",
             monthly_income="1234.50", programs_enrolled="SNAP",
             programs_eligible="MEDICAID;LIHEAP"),
        dict(first_name='O\'Brien, "Jr."', last_name="Robert'); DROP TABLE students;--",
             date_of_birth="1900-01-01", address_line1='1, "Quoted" Way',
             address_line2="Unit 4\nRear entrance", city="Wilkes-Barre", zip="19103-1234",
             phone="", email="", language="en", household_size="20", monthly_income="0",
             programs_enrolled="", programs_eligible="SNAP;MEDICAID;LIHEAP;WIC;MSP;EXTRA_HELP"),
        dict(first_name="张伟", last_name="Nguyễn Thị Minh Khai", date_of_birth=last.isoformat(),
             address_line1="88 Chinatown Plaza", address_line2="  ", city="Philadelphia",
             zip="19107", phone="2675550199", email="zw+test@example.com", language="zh",
             household_size="1", monthly_income="12345.678", programs_enrolled="SNAP;WIC;MSP",
             programs_eligible="EXTRA_HELP"),
        dict(first_name="أحمد", last_name="Ελευθερίου", date_of_birth="1985-02-28",
             address_line1="5 Rue de l'Église", address_line2="", city="Zoë's Town",
             zip="08002", phone="", email="", language="ar", household_size="4",
             monthly_income="2000", programs_enrolled="MEDICAID", programs_eligible="SNAP;LIHEAP"),
        dict(first_name="NULL", last_name="N/A", date_of_birth="1944-12-31",
             address_line1="SELECT * FROM raw.eligibility; --", address_line2="#5", city="Test",
             zip="99501", phone="9075550123", email="null@example.com", language="vi",
             household_size="7", monthly_income="999999.99", programs_enrolled="",
             programs_eligible="WIC"),
        dict(first_name="Zoë 🙂", last_name="Smith-Jones", date_of_birth="2000-02-29",
             address_line1="742 Evergreen Terrace", address_line2="", city="Scranton",
             zip="18503", phone="5705550142", email="", language="en", household_size="2",
             monthly_income="850.00", programs_enrolled="", programs_eligible="MSP;EXTRA_HELP"),
    ]
    rows = []
    for i, person in enumerate(people):
        ssn = "" if i == 1 else ssn_for(state, month, i)
        rows.append({"record_id": f"CC-{tag}-{i + 1:04d}", "ssn": ssn, "state": state, **person})
    return [{c: row[c] for c in columns("eligibility")} for row in rows]


def _outcomes(state: str, month: dt.date) -> Rows:
    tag, last = f"{state}-{month:%Y%m}", last_day(month)
    day = lambda d: month.replace(day=d).isoformat()  # noqa: E731
    rows = [
        (f"APP-{tag}-0001", "SNAP", "approved", day(3), "291.50"),
        (f"APP-{tag}-0002", "MEDICAID", "denied", f"{month.year - 1}-12-15", "0"),
        (f"APP-{tag}-0003", "LIHEAP", "pending", last.isoformat(), "0.00"),
        (f"APP-X-{tag}-01", "WIC", "approved", day(10), "0"),
        (f'APP, "quoted" {tag}', "EXTRA_HELP", "approved", day(1), "4000.00"),
        (f"APP-{tag}-0006", "MSP", "denied", day(20), "0"),
    ]
    return [dict(zip(columns("outcomes"), row)) for row in rows]


def _mailreturns(state: str, month: dt.date) -> Rows:
    tag = f"{state}-{month:%Y%m}"
    day = lambda d: month.replace(day=d).isoformat()  # noqa: E731
    before = (month - dt.timedelta(days=3)).isoformat()
    rows = [
        (f"MP-{tag}-000001", day(1), "delivered", day(5)),
        (f"MP-{tag}-000002", day(1), "returned", day(1)),
        (f"MP-{tag}-000003", before, "undeliverable", day(2)),
        (f"MP-{tag}-000004", day(2), "forwarded", day(20)),
        (f"MP-{tag}-000005", day(3), "delivered", day(9)),
    ]
    return [dict(zip(columns("mailreturns"), row)) for row in rows]


def token(state: str, month: dt.date, i: int) -> str:
    return person_token(TOKEN_KEY, ssn_for(state, month, i))


def _nudges(state: str, month: dt.date) -> Rows:
    tag, last = f"{state}-{month:%Y%m}", last_day(month)
    day = lambda d: month.replace(day=d).isoformat()  # noqa: E731
    campaign, odd = f"{state}-{month:%Y%m}-snap-spring", 'Spring, "Push" 2024'
    rows = [
        ("sent", campaign, "treatment", "sms", 0, f"{day(1)}T00:00:00Z"),
        ("delivered", campaign, "treatment", "sms", 0, f"{day(1)}T00:01:30+00:00"),
        ("call_completed", odd, "control", "call", 1, f"{day(15)} 12:00:00-0400"),
        ("replied", campaign, "treatment", "sms", 2, f"{day(15)}T12:00:00.123456+05:30"),
        ("opted_out", odd, "control", "sms", 3, f"{last.isoformat()}T22:30:00-05:00"),
        ("failed", campaign, "control", "call", 4, f"{day(20)}T08:15+00:00"),
    ]
    return [{"event_id": f"NV-{tag}-{i + 1:07d}", "campaign_id": c, "arm": arm, "channel": ch,
             "recipient_key": token(state, month, who), "event_type": kind, "event_ts": ts}
            for i, (kind, c, arm, ch, who, ts) in enumerate(rows)]


def csv_text(rows: Rows, names: list[str], lineterminator: str = "\n") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=lineterminator, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(names)
    writer.writerows([[row[c] for c in names] for row in rows])
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=buffer, mode="wb", mtime=0) as out:
        out.write(data)
    return buffer.getvalue()


def good_file(feed: str, state: str, month: dt.date, gz: bool = False) -> bytes:
    data = csv_text(good_rows(feed, state, month), columns(feed)).encode("utf-8")
    return gzip_bytes(data) if gz else data


def filename(feed: str, state: str, month: dt.date, gz: bool = False) -> str:
    return drop_filename(partner(feed, state), state, month, feed, gzip=gz)


def partner(feed: str, state: str) -> str:
    """The partner a test drop of ``feed`` for ``state`` comes from (its main synthetic sender)."""
    return feed_partners(feed, state)[0]


# ---------------------------------------------------------------------------------------------
# The cases

@dataclass(frozen=True)
class Case:
    id: str
    feed: str
    rule: str
    column: str | None
    build: Callable[[str, dt.date], bytes]  # (state, month) -> the file's bytes as delivered
    gz: bool = False
    also: tuple[str, ...] = ()

    @property
    def rules(self) -> set[str]:
        return {self.rule, *self.also}

    def data(self, state: str, month: dt.date) -> bytes:
        return self.build(state, month)

    def filename(self, state: str, month: dt.date) -> str:
        return filename(self.feed, state, month, self.gz)

    def partner(self, state: str) -> str:
        return partner(self.feed, state)


def rows_case(id: str, feed: str, rule: str, column: str | None,
              edit: Callable[[Rows, str, dt.date], Rows | None], gz: bool = False,
              also: tuple[str, ...] = ()) -> Case:
    """Break the rule by editing the rows (then written as a clean CSV)."""
    def build(state: str, month: dt.date) -> bytes:
        rows = [dict(row) for row in good_rows(feed, state, month)]
        rows = edit(rows, state, month) or rows
        data = csv_text(rows, columns(feed)).encode("utf-8")
        return gzip_bytes(data) if gz else data
    return Case(id, feed, rule, column, build, gz, also)


def text_case(id: str, feed: str, rule: str, column: str | None,
              edit: Callable[[str, str, dt.date], str], gz: bool = False,
              also: tuple[str, ...] = ()) -> Case:
    """Break the rule by editing the CSV text."""
    def build(state: str, month: dt.date) -> bytes:
        text = edit(csv_text(good_rows(feed, state, month), columns(feed)), state, month)
        data = text.encode("utf-8")
        return gzip_bytes(data) if gz else data
    return Case(id, feed, rule, column, build, gz, also)


def bytes_case(id: str, feed: str, rule: str, column: str | None,
               edit: Callable[[bytes, str, dt.date], bytes], gz: bool = False,
               also: tuple[str, ...] = ()) -> Case:
    """Break the rule by editing the bytes of the plain (uncompressed) good file."""
    def build(state: str, month: dt.date) -> bytes:
        return edit(good_file(feed, state, month), state, month)
    return Case(id, feed, rule, column, build, gz, also)


def setter(index: int, **values: str) -> Callable[[Rows, str, dt.date], None]:
    def edit(rows: Rows, state: str, month: dt.date) -> None:
        rows[index].update({k: v(state, month) if callable(v) else v for k, v in values.items()})
    return edit


def duplicate_value(column: str, source: int = 0, target: int = 2):
    def edit(rows: Rows, state: str, month: dt.date) -> None:
        rows[target][column] = rows[source][column]
    return edit


def _drop_column(name: str):
    def edit(text: str, state: str, month: dt.date) -> str:
        rows = list(csv.reader(io.StringIO(text, newline="")))
        at = rows[0].index(name)
        return _write([row[:at] + row[at + 1:] for row in rows])
    return edit


def _rename_column(old: str, new: str):
    def edit(text: str, state: str, month: dt.date) -> str:
        rows = list(csv.reader(io.StringIO(text, newline="")))
        rows[0] = [new if c == old else c for c in rows[0]]
        return _write(rows)
    return edit


def _add_column(name: str, value: str):
    def edit(text: str, state: str, month: dt.date) -> str:
        rows = list(csv.reader(io.StringIO(text, newline="")))
        return _write([rows[0] + [name]] + [row + [value] for row in rows[1:]])
    return edit


def _repeat_column(name: str):
    def edit(text: str, state: str, month: dt.date) -> str:
        rows = list(csv.reader(io.StringIO(text, newline="")))
        at = rows[0].index(name)
        return _write([row + [row[at]] for row in rows])
    return edit


def _write(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _edit_line(number: int, edit: Callable[[str], str]):
    """Edit physical line ``number`` (1 = header) of the text."""
    def apply(text: str, state: str, month: dt.date) -> str:
        lines = text.split("\n")
        lines[number - 1] = edit(lines[number - 1])
        return "\n".join(lines)
    return apply


def _latin1(data: bytes, state: str, month: dt.date) -> bytes:
    return data.decode("utf-8").encode("latin-1", errors="replace")


def _binary(data: bytes, state: str, month: dt.date) -> bytes:
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(range(256)) * 4


def _truncated_gzip(data: bytes, state: str, month: dt.date) -> bytes:
    return gzip_bytes(data)[:-25]


def _utf16(data: bytes, state: str, month: dt.date) -> bytes:
    return data.decode("utf-8").encode("utf-16")


def _bell_in_a_value(text: str, state: str, month: dt.date) -> str:
    return text.replace("returned", "ret\x07urned", 1)


CASES: list[Case] = [
    # -- Undecodable or structurally broken files (caught before pandera) ----------------------
    bytes_case("latin1_encoded", "eligibility", "utf8_encoding", None, _latin1),
    bytes_case("utf16_encoded", "outcomes", "utf8_encoding", None, _utf16),
    bytes_case("binary_data", "mailreturns", "text_not_binary", None, _binary),
    text_case("control_character", "mailreturns", "text_not_binary", None, _bell_in_a_value),
    bytes_case("broken_gzip", "nudges", "gzip_readable", None, _truncated_gzip, gz=True),
    bytes_case("gz_name_plain_text", "nudges", "gzip_readable", None,
               lambda data, s, m: data, gz=True),
    bytes_case("gzip_named_csv", "outcomes", "compression_matches_file_name", None,
               lambda data, s, m: gzip_bytes(data)),
    bytes_case("empty_file", "outcomes", "file_not_empty", None, lambda data, s, m: b""),
    bytes_case("only_bom_and_blank_lines", "mailreturns", "file_not_empty", None,
               lambda data, s, m: b"\xef\xbb\xbf\r\n\r\n"),
    text_case("unclosed_quote", "outcomes", "csv_well_formed", None,
              _edit_line(3, lambda line: line.replace("MEDICAID", '"MEDICAID'))),
    text_case("text_after_closing_quote", "nudges", "csv_well_formed", None,
              _edit_line(2, lambda line: line.replace(",sms,", ',"sms"x,'))),
    text_case("header_row_missing", "eligibility", "header_row_present", None,
              lambda text, s, m: text.split("\n", 1)[1]),
    text_case("column_missing", "eligibility", "required_columns_present", "phone",
              _drop_column("phone")),
    text_case("column_renamed", "outcomes", "required_columns_present", "decision",
              _rename_column("decision", "status"), also=("no_unexpected_columns",)),
    text_case("unexpected_column", "mailreturns", "no_unexpected_columns", "notes",
              _add_column("notes", "left at door")),
    text_case("column_twice", "nudges", "unique_column_names", "event_id",
              _repeat_column("event_id")),
    text_case("extra_field_unquoted_comma", "eligibility", "field_count_matches_header", None,
              _edit_line(2, lambda line: line.replace("12 Elm St", "12 Elm St, Rear"))),
    text_case("missing_field", "nudges", "field_count_matches_header", None,
              _edit_line(3, lambda line: line.rsplit(",", 1)[0]), gz=True),
    # -- eligibility -----------------------------------------------------------------------
    rows_case("record_id_duplicated", "eligibility", "record_id_unique", "record_id",
              duplicate_value("record_id")),
    rows_case("record_id_empty", "eligibility", "record_id_not_blank", "record_id",
              setter(3, record_id="")),
    rows_case("first_name_whitespace", "eligibility", "first_name_not_blank", "first_name",
              setter(0, first_name="   ")),
    rows_case("last_name_empty", "eligibility", "last_name_not_blank", "last_name",
              setter(4, last_name="")),
    rows_case("ssn_with_dashes", "eligibility", "ssn_9_digits_or_empty", "ssn",
              setter(0, ssn="219-09-8765")),
    rows_case("ssn_eight_digits", "eligibility", "ssn_9_digits_or_empty", "ssn",
              setter(2, ssn="31827465")),
    rows_case("ssn_full_width_digits", "eligibility", "ssn_9_digits_or_empty", "ssn",
              setter(5, ssn="４２７３６１９５８")),
    rows_case("ssn_all_zeros", "eligibility", "ssn_not_all_zeros", "ssn",
              setter(3, ssn="000000000")),
    rows_case("date_of_birth_feb_30", "eligibility", "date_of_birth_is_date", "date_of_birth",
              setter(0, date_of_birth="1990-02-30")),
    rows_case("date_of_birth_us_format", "eligibility", "date_of_birth_is_date", "date_of_birth",
              setter(4, date_of_birth="07/04/1961")),
    rows_case("date_of_birth_after_file_month", "eligibility",
              "date_of_birth_between_1900_and_file_month", "date_of_birth",
              setter(2, date_of_birth=lambda s, m: add_months(m, 1).isoformat())),
    rows_case("date_of_birth_before_1900", "eligibility",
              "date_of_birth_between_1900_and_file_month", "date_of_birth",
              setter(1, date_of_birth="1899-12-31")),
    rows_case("address_line1_empty", "eligibility", "address_line1_not_blank", "address_line1",
              setter(5, address_line1="")),
    rows_case("city_whitespace", "eligibility", "city_not_blank", "city", setter(3, city="\t ")),
    rows_case("state_differs_from_file_name", "eligibility", "state_matches_file_name", "state",
              setter(1, state=lambda s, m: "NJ" if s != "NJ" else "NY")),
    rows_case("state_lower_case", "eligibility", "state_matches_file_name", "state",
              setter(4, state=lambda s, m: s.lower())),
    rows_case("zip_four_digits", "eligibility", "zip_format", "zip", setter(0, zip="1910")),
    rows_case("phone_formatted", "eligibility", "phone_10_digits_or_empty", "phone",
              setter(0, phone="(215) 555-0100")),
    rows_case("language_name", "eligibility", "language_iso_639_1", "language",
              setter(2, language="english")),
    rows_case("language_not_iso", "eligibility", "language_iso_639_1", "language",
              setter(0, language="xx")),
    rows_case("household_size_21", "eligibility", "household_size_1_to_20", "household_size",
              setter(5, household_size="21")),
    rows_case("household_size_zero", "eligibility", "household_size_1_to_20", "household_size",
              setter(0, household_size="0")),
    rows_case("monthly_income_negative", "eligibility", "monthly_income_not_negative",
              "monthly_income", setter(3, monthly_income="-100.00")),
    rows_case("monthly_income_dollar_sign", "eligibility", "monthly_income_is_decimal",
              "monthly_income", setter(0, monthly_income="$1,200")),
    rows_case("programs_enrolled_unknown", "eligibility", "programs_enrolled_known_codes",
              "programs_enrolled", setter(0, programs_enrolled="SNAP;FOODSTAMPS")),
    rows_case("programs_enrolled_trailing_separator", "eligibility",
              "programs_enrolled_known_codes", "programs_enrolled",
              setter(3, programs_enrolled="MEDICAID;")),
    rows_case("programs_enrolled_duplicated", "eligibility", "programs_enrolled_no_duplicates",
              "programs_enrolled", setter(2, programs_enrolled="SNAP;WIC;SNAP")),
    rows_case("programs_eligible_empty", "eligibility", "programs_eligible_not_empty",
              "programs_eligible", setter(4, programs_eligible="")),
    rows_case("programs_eligible_lower_case", "eligibility", "programs_eligible_known_codes",
              "programs_eligible", setter(0, programs_eligible="medicaid")),
    rows_case("programs_eligible_duplicated", "eligibility", "programs_eligible_no_duplicates",
              "programs_eligible", setter(5, programs_eligible="MSP;MSP")),
    # -- outcomes --------------------------------------------------------------------------
    rows_case("application_id_empty", "outcomes", "application_id_not_blank", "application_id",
              setter(1, application_id="")),
    rows_case("program_unknown", "outcomes", "program_code_known", "program",
              setter(0, program="FOOD_STAMPS")),
    rows_case("decision_capitalized", "outcomes", "decision_known", "decision",
              setter(1, decision="Denied")),
    rows_case("decision_date_impossible", "outcomes", "decision_date_is_date", "decision_date",
              setter(0, decision_date=lambda s, m: f"{m.year}-02-30")),
    rows_case("decision_date_after_file_month", "outcomes",
              "decision_date_within_or_before_file_month", "decision_date",
              setter(2, decision_date=lambda s, m: add_months(m, 1).isoformat())),
    rows_case("benefit_when_denied", "outcomes", "benefit_only_when_approved",
              "monthly_benefit_usd", setter(1, monthly_benefit_usd="150.00")),
    rows_case("benefit_negative", "outcomes", "monthly_benefit_usd_not_negative",
              "monthly_benefit_usd", setter(0, monthly_benefit_usd="-291.50")),
    rows_case("benefit_not_a_number", "outcomes", "monthly_benefit_usd_is_decimal",
              "monthly_benefit_usd", setter(4, monthly_benefit_usd="four thousand")),
    # -- mailreturns -----------------------------------------------------------------------
    rows_case("mail_piece_id_duplicated", "mailreturns", "mail_piece_id_unique", "mail_piece_id",
              duplicate_value("mail_piece_id", 0, 4)),
    rows_case("mail_piece_id_empty", "mailreturns", "mail_piece_id_not_blank", "mail_piece_id",
              setter(2, mail_piece_id="")),
    rows_case("mailed_date_month_13", "mailreturns", "mailed_date_is_date", "mailed_date",
              setter(1, mailed_date=lambda s, m: f"{m.year}-13-01")),
    rows_case("status_unknown", "mailreturns", "status_known", "status",
              setter(3, status="lost")),
    rows_case("status_date_not_a_date", "mailreturns", "status_date_is_date", "status_date",
              setter(0, status_date="")),
    rows_case("status_before_mailing", "mailreturns", "status_date_on_or_after_mailed_date",
              "status_date", setter(3, status_date=lambda s, m: m.replace(day=1).isoformat())),
    # -- nudges ----------------------------------------------------------------------------
    rows_case("event_id_duplicated", "nudges", "event_id_unique", "event_id",
              duplicate_value("event_id", 1, 4), gz=True),
    rows_case("event_id_empty", "nudges", "event_id_not_blank", "event_id",
              setter(5, event_id="")),
    rows_case("campaign_id_empty", "nudges", "campaign_id_not_blank", "campaign_id",
              setter(2, campaign_id="")),
    rows_case("campaign_id_carries_ssn", "nudges", "campaign_id_has_no_ssn", "campaign_id",
              setter(0, campaign_id="recert-427-36-1958")),
    rows_case("arm_unknown", "nudges", "arm_known", "arm", setter(1, arm="treat")),
    rows_case("channel_unknown", "nudges", "channel_known", "channel",
              setter(3, channel="email")),
    rows_case("recipient_key_raw_ssn", "nudges", "recipient_key_is_person_token", "recipient_key",
              setter(2, recipient_key="318274650"), gz=True),
    rows_case("recipient_key_upper_case", "nudges", "recipient_key_is_person_token",
              "recipient_key",
              setter(0, recipient_key=lambda s, m: token(s, m, 0).upper().replace("TOK_", "tok_"))),
    rows_case("event_type_unknown", "nudges", "event_type_known", "event_type",
              setter(4, event_type="clicked")),
    rows_case("event_ts_without_offset", "nudges", "event_ts_is_timestamp", "event_ts",
              setter(1, event_ts=lambda s, m: f"{m.isoformat()}T09:30:00")),
    # Valid text whose UTC instant lies in year 0: no datetime holds it, so it cannot load.
    rows_case("event_ts_utc_before_year_1", "nudges", "event_ts_is_timestamp", "event_ts",
              setter(1, event_ts="0001-01-01T00:30:00+01:00"),
              also=("event_ts_within_file_month",)),
    rows_case("event_ts_next_month", "nudges", "event_ts_within_file_month", "event_ts",
              setter(5, event_ts=lambda s, m: f"{add_months(m, 1).isoformat()}T00:00:00Z")),
    rows_case("event_ts_previous_month_at_offset", "nudges", "event_ts_within_file_month",
              "event_ts",
              setter(3, event_ts=lambda s, m: f"{(m - dt.timedelta(days=1)).isoformat()}"
                                              "T23:30:00-05:00")),
]

CASES_BY_ID = {case.id: case for case in CASES}
assert len(CASES_BY_ID) == len(CASES), "case ids must be unique"


def ssn_forms(ssn: str) -> set[str]:
    """How a full SSN could show: 123456789 and 123-45-6789."""
    return {ssn, f"{ssn[:3]}-{ssn[3:5]}-{ssn[5:]}"}


def secrets(state: str, month: dt.date) -> set[str]:
    """Every full SSN a corpus file for this partition may carry, in every spelling."""
    found: set[str] = set()
    for ssn in {*ssns_in_good_files(state, month), *INJECTED_SSNS}:
        found |= ssn_forms(ssn)
    return found


def leaked(text: str, forbidden: set[str]) -> list[str]:
    """The forbidden SSN spellings that appear anywhere in ``text``."""
    return sorted(s for s in forbidden if s in text)
