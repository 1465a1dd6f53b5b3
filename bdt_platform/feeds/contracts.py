"""The partner data contract (feeds.md) as pandera ``DataFrameModel``s.

Files are validated as text, exactly as the partner wrote them (every column a string), so a
failure report can quote the offending value. Each model also sees two context columns the loader
adds from the file name, ``file_state`` and ``file_month``, for the rules that depend on it
("state equals the state in the file name", "dates within the file's month").
Conversion to typed columns happens after validation (``feeds.parsing``) and cannot fail.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from bdt_platform.pii import TOKEN_PATTERN

PROGRAMS = ("SNAP", "MEDICAID", "LIHEAP", "WIC", "MSP", "EXTRA_HELP")
LANGUAGE_PATTERN = r"^[a-z]{2}$"
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$"
DECIMAL_PATTERN = r"^\d+(\.\d+)?$"
CONTEXT_COLUMNS = ("file_state", "file_month")


def as_date(values: pd.Series) -> pd.Series:
    """Parse ISO dates; anything else (including impossible dates like 2024-02-30) -> NaT."""
    return pd.to_datetime(values.where(values.str.match(DATE_PATTERN)), format="%Y-%m-%d",
                          errors="coerce")


def as_timestamp(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values.where(values.str.match(TIMESTAMP_PATTERN)), format="ISO8601",
                          errors="coerce", utc=True)


def _month_bounds(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    start = pd.to_datetime(frame["file_month"], format="%Y-%m-%d")
    return start, start + pd.offsets.MonthBegin(1)


def _program_list_ok(values: pd.Series, allow_empty: bool) -> pd.Series:
    def ok(text: str) -> bool:
        if text == "":
            return allow_empty
        codes = text.split(";")
        return all(code in PROGRAMS for code in codes) and len(set(codes)) == len(codes)
    return values.map(ok).astype(bool)


class FileContract(pa.DataFrameModel):
    """Context every feed shares: the state and month named in the file name."""

    file_state: Series[str]
    file_month: Series[str]

    class Config:
        strict = True
        coerce = False


class EligibilityContract(FileContract):
    """``eligibility``: people a partner believes eligible for benefits they do not receive."""

    record_id: Series[str] = pa.Field(unique=True, str_length={"min_value": 1})
    first_name: Series[str] = pa.Field(str_length={"min_value": 1})
    last_name: Series[str] = pa.Field(str_length={"min_value": 1})
    ssn: Series[str] = pa.Field(str_matches=r"^(\d{9})?$", ne="000000000")
    date_of_birth: Series[str]
    address_line1: Series[str] = pa.Field(str_length={"min_value": 1})
    address_line2: Series[str]
    city: Series[str] = pa.Field(str_length={"min_value": 1})
    state: Series[str]
    zip: Series[str] = pa.Field(str_matches=r"^\d{5}(-\d{4})?$")
    phone: Series[str] = pa.Field(str_matches=r"^(\d{10})?$")
    email: Series[str]
    language: Series[str] = pa.Field(str_matches=LANGUAGE_PATTERN)
    household_size: Series[str] = pa.Field(str_matches=r"^\d{1,2}$")
    monthly_income: Series[str] = pa.Field(str_matches=DECIMAL_PATTERN)
    programs_enrolled: Series[str]
    programs_eligible: Series[str]

    @pa.check("household_size", name="household_size_1_to_20")
    def household_size_in_range(cls, values: Series[str]) -> Series[bool]:
        numbers = pd.to_numeric(values, errors="coerce")
        return numbers.between(1, 20)

    @pa.check("programs_enrolled", name="known_program_codes_or_empty")
    def enrolled_codes(cls, values: Series[str]) -> Series[bool]:
        return _program_list_ok(values, allow_empty=True)

    @pa.check("programs_eligible", name="at_least_one_known_program_code")
    def eligible_codes(cls, values: Series[str]) -> Series[bool]:
        return _program_list_ok(values, allow_empty=False)

    @pa.dataframe_check(name="state_matches_file_name")
    def state_matches_file(cls, frame: pd.DataFrame) -> Series[bool]:
        return frame["state"] == frame["file_state"]

    @pa.dataframe_check(name="date_of_birth_between_1900_and_file_month")
    def dob_in_range(cls, frame: pd.DataFrame) -> Series[bool]:
        dob = as_date(frame["date_of_birth"])
        _, end = _month_bounds(frame)
        return dob.notna() & (dob >= pd.Timestamp("1900-01-01")) & (dob < end)


class OutcomesContract(FileContract):
    """``outcomes``: state decisions on applications we helped submit."""

    application_id: Series[str] = pa.Field(str_length={"min_value": 1})
    program: Series[str] = pa.Field(isin=list(PROGRAMS))
    decision: Series[str] = pa.Field(isin=["approved", "denied", "pending"])
    decision_date: Series[str]
    monthly_benefit_usd: Series[str] = pa.Field(str_matches=DECIMAL_PATTERN)

    @pa.dataframe_check(name="decision_date_within_or_before_file_month")
    def decision_date_ok(cls, frame: pd.DataFrame) -> Series[bool]:
        decided = as_date(frame["decision_date"])
        _, end = _month_bounds(frame)
        return decided.notna() & (decided < end)

    @pa.dataframe_check(name="benefit_only_when_approved")
    def benefit_only_when_approved(cls, frame: pd.DataFrame) -> Series[bool]:
        benefit = pd.to_numeric(frame["monthly_benefit_usd"], errors="coerce")
        return (frame["decision"] == "approved") | (benefit == 0) | benefit.isna()


class MailReturnsContract(FileContract):
    """``mailreturns``: what became of each mail piece, from the print-and-mail vendor."""

    mail_piece_id: Series[str] = pa.Field(unique=True, str_length={"min_value": 1})
    mailed_date: Series[str]
    status: Series[str] = pa.Field(isin=["delivered", "returned", "undeliverable", "forwarded"])
    status_date: Series[str]

    @pa.dataframe_check(name="mailed_date_is_a_date")
    def mailed_date_ok(cls, frame: pd.DataFrame) -> Series[bool]:
        return as_date(frame["mailed_date"]).notna()

    @pa.dataframe_check(name="status_date_on_or_after_mailed_date")
    def status_after_mailing(cls, frame: pd.DataFrame) -> Series[bool]:
        mailed, status = as_date(frame["mailed_date"]), as_date(frame["status_date"])
        return status.notna() & (mailed.isna() | (status >= mailed))


class NudgesContract(FileContract):
    """``nudges``: text and call campaign events from the nudge vendor."""

    event_id: Series[str] = pa.Field(unique=True, str_length={"min_value": 1})
    campaign_id: Series[str] = pa.Field(str_length={"min_value": 1})
    arm: Series[str] = pa.Field(isin=["treatment", "control"])
    channel: Series[str] = pa.Field(isin=["sms", "call"])
    recipient_key: Series[str] = pa.Field(str_matches=TOKEN_PATTERN)
    event_type: Series[str] = pa.Field(
        isin=["sent", "delivered", "replied", "opted_out", "call_completed", "failed"]
    )
    event_ts: Series[str]

    @pa.dataframe_check(name="event_ts_within_file_month")
    def event_in_month(cls, frame: pd.DataFrame) -> Series[bool]:
        ts = as_timestamp(frame["event_ts"])
        start, end = _month_bounds(frame)
        start, end = start.dt.tz_localize("UTC"), end.dt.tz_localize("UTC")
        return ts.notna() & (ts >= start) & (ts < end)


class ClientsContract(FileContract):
    """Case-management ``clients``: people who called or applied through us."""

    client_id: Series[str] = pa.Field(unique=True, str_length={"min_value": 1})
    first_name: Series[str] = pa.Field(str_length={"min_value": 1})
    last_name: Series[str] = pa.Field(str_length={"min_value": 1})
    ssn: Series[str] = pa.Field(str_matches=r"^(\d{9})?$", ne="000000000")
    date_of_birth: Series[str] = pa.Field(str_matches=DATE_PATTERN)
    address_line1: Series[str]
    address_line2: Series[str]
    city: Series[str]
    state: Series[str]
    zip: Series[str] = pa.Field(str_matches=r"^(\d{5}(-\d{4})?)?$")
    phone: Series[str] = pa.Field(str_matches=r"^(\d{10})?$")
    email: Series[str]
    language: Series[str] = pa.Field(str_matches=r"^([a-z]{2})?$")
    created_at: Series[str] = pa.Field(str_matches=TIMESTAMP_PATTERN)
    updated_at: Series[str] = pa.Field(str_matches=TIMESTAMP_PATTERN)

    @pa.dataframe_check(name="state_matches_partition")
    def state_matches(cls, frame: pd.DataFrame) -> Series[bool]:
        return frame["state"] == frame["file_state"]


class ApplicationsContract(FileContract):
    """Case-management ``applications`` submitted with our help."""

    application_id: Series[str] = pa.Field(unique=True, str_length={"min_value": 1})
    client_id: Series[str] = pa.Field(str_length={"min_value": 1})
    program: Series[str] = pa.Field(isin=list(PROGRAMS))
    state: Series[str]
    channel: Series[str] = pa.Field(isin=["phone", "web", "mail"])
    submitted_at: Series[str] = pa.Field(str_matches=TIMESTAMP_PATTERN)
    updated_at: Series[str] = pa.Field(str_matches=TIMESTAMP_PATTERN)

    @pa.dataframe_check(name="state_matches_partition")
    def state_matches(cls, frame: pd.DataFrame) -> Series[bool]:
        return frame["state"] == frame["file_state"]


class CallsContract(FileContract):
    """Case-management ``calls`` between clients and our call center."""

    call_id: Series[str] = pa.Field(unique=True, str_length={"min_value": 1})
    client_id: Series[str] = pa.Field(str_length={"min_value": 1})
    state: Series[str]
    started_at: Series[str] = pa.Field(str_matches=TIMESTAMP_PATTERN)
    duration_s: Series[str] = pa.Field(str_matches=r"^\d+$")
    outcome: Series[str] = pa.Field(str_length={"min_value": 1})
    updated_at: Series[str] = pa.Field(str_matches=TIMESTAMP_PATTERN)

    @pa.dataframe_check(name="state_matches_partition")
    def state_matches(cls, frame: pd.DataFrame) -> Series[bool]:
        return frame["state"] == frame["file_state"]


# Dataframe-level rules report no column of their own; name the column they are about.
RULE_COLUMNS = {
    "state_matches_file_name": "state",
    "state_matches_partition": "state",
    "date_of_birth_between_1900_and_file_month": "date_of_birth",
    "decision_date_within_or_before_file_month": "decision_date",
    "benefit_only_when_approved": "monthly_benefit_usd",
    "mailed_date_is_a_date": "mailed_date",
    "status_date_on_or_after_mailed_date": "status_date",
    "event_ts_within_file_month": "event_ts",
}
