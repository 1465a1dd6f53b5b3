"""What each feed is: its contract, its columns and the typed shape of its raw warehouse table."""

from __future__ import annotations

from dataclasses import dataclass

import pandera.pandas as pa
import pyarrow as pa_types

from bdt_platform.feeds import contract_rules, contracts

STRING, DATE, DOUBLE, INT = pa_types.string(), pa_types.date32(), pa_types.float64(), pa_types.int64()
TIMESTAMP = pa_types.timestamp("us", tz="UTC")

# Columns every partitioned raw table carries (interfaces.md).
PARTITION_FIELDS = [("state", STRING), ("month", DATE), ("_source_file", STRING)]
# And a partner feed's raw table: the partner that sent each row's file. Several partners may
# send a feed for one state x month; a partner's newer file replaces only its own rows.
PARTNER_FIELD = ("_partner", STRING)


@dataclass(frozen=True)
class FeedSpec:
    name: str
    description: str
    contract: type[pa.DataFrameModel]
    # Typed raw-table columns in order (before state, month, _source_file). ``person_token``
    # replaces ``ssn`` when ``tokenize`` is set; ``state`` is listed in PARTITION_FIELDS.
    fields: tuple[tuple[str, pa_types.DataType], ...]
    tokenize: bool = False
    # Columns whose empty string means "no value" (stored as NULL).
    optional: tuple[str, ...] = ()
    # A partner file feed: its rows carry ``_partner`` (from the file name), and a load replaces
    # a partition's rows partner by partner.
    from_partners: bool = False
    # The columns of this feed that models read from *other* partitions, by id (a client's
    # person token joined into every month's facts). A partition whose rows change only
    # elsewhere (a returning client's ``updated_at``) reaches no other partition's facts
    # (``warehouse.staleness``); its materialization carries a version of these columns
    # (``provenance.JOIN_VERSION_KEY``).
    join_columns: tuple[str, ...] = ()

    @property
    def input_columns(self) -> list[str]:
        """Columns the partner's file must have, in contract order."""
        return [c for c in self.contract.to_schema().columns
                if c not in contract_rules.CONTEXT_COLUMNS]

    @property
    def arrow_schema(self) -> pa_types.Schema:
        fields = list(self.fields)
        if self.tokenize:
            fields.insert(0, ("person_token", STRING))
        return pa_types.schema(fields + PARTITION_FIELDS
                               + ([PARTNER_FIELD] if self.from_partners else []))

    @property
    def table(self) -> str:
        return f"raw.{self.name}"


_PERSON = (
    ("first_name", STRING), ("last_name", STRING), ("date_of_birth", DATE),
    ("address_line1", STRING), ("address_line2", STRING), ("city", STRING), ("zip", STRING),
    ("phone", STRING), ("email", STRING), ("language", STRING),
)

ELIGIBILITY = FeedSpec(
    name="eligibility",
    description="People a partner believes eligible for benefits they do not receive.",
    contract=contracts.EligibilityContract,
    fields=(("record_id", STRING), *_PERSON, ("household_size", INT), ("monthly_income", DOUBLE),
            ("programs_enrolled", STRING), ("programs_eligible", STRING)),
    tokenize=True,
    optional=("ssn", "address_line2", "phone", "email", "programs_enrolled"),
    from_partners=True,
)
OUTCOMES = FeedSpec(
    name="outcomes",
    description="State decisions on applications we helped submit.",
    contract=contracts.OutcomesContract,
    fields=(("application_id", STRING), ("program", STRING), ("decision", STRING),
            ("decision_date", DATE), ("monthly_benefit_usd", DOUBLE)),
    from_partners=True,
)
MAILRETURNS = FeedSpec(
    name="mailreturns",
    description="What became of each mail piece we sent, from the print-and-mail vendor.",
    contract=contracts.MailReturnsContract,
    fields=(("mail_piece_id", STRING), ("mailed_date", DATE), ("status", STRING),
            ("status_date", DATE)),
    from_partners=True,
)
NUDGES = FeedSpec(
    name="nudges",
    description="Text and call campaign events from the nudge vendor (A/B arms included).",
    contract=contracts.NudgesContract,
    fields=(("event_id", STRING), ("campaign_id", STRING), ("arm", STRING), ("channel", STRING),
            ("recipient_key", STRING), ("event_type", STRING), ("event_ts", TIMESTAMP)),
    from_partners=True,
)
CLIENTS = FeedSpec(
    name="clients",
    description="Case-management clients: people who called or applied through us.",
    contract=contracts.ClientsContract,
    fields=(("client_id", STRING), *_PERSON, ("created_at", TIMESTAMP), ("updated_at", TIMESTAMP)),
    tokenize=True,
    optional=("ssn", "address_line1", "address_line2", "city", "zip", "phone", "email",
              "language"),
    # fct_applications, fct_calls and the matched outcomes take a client's person token.
    join_columns=("client_id", "person_token"),
)
APPLICATIONS = FeedSpec(
    name="applications",
    description="Case-management applications submitted with our help.",
    contract=contracts.ApplicationsContract,
    fields=(("application_id", STRING), ("client_id", STRING), ("program", STRING),
            ("channel", STRING), ("submitted_at", TIMESTAMP), ("updated_at", TIMESTAMP)),
    # The matched outcomes (int_outcomes__matched_to_applications) take an application's
    # client and program.
    join_columns=("application_id", "client_id", "program"),
)
CALLS = FeedSpec(
    name="calls",
    description="Case-management calls between clients and our call center.",
    contract=contracts.CallsContract,
    fields=(("call_id", STRING), ("client_id", STRING), ("started_at", TIMESTAMP),
            ("duration_s", INT), ("outcome", STRING), ("updated_at", TIMESTAMP)),
)

FILE_FEED_SPECS = {spec.name: spec for spec in (ELIGIBILITY, OUTCOMES, MAILRETURNS, NUDGES)}
CASEMGMT_SPECS = {spec.name: spec for spec in (CLIENTS, APPLICATIONS, CALLS)}
ALL_SPECS = {**FILE_FEED_SPECS, **CASEMGMT_SPECS}
