"""One state-month of outreach: who was eligible, mailed, nudged, called, applied, and was decided.

The funnel (rates are per state-month, at any scale):

* **eligible** - ~300 x scale pool members appear in the partners' eligibility lists (the
  state agency's, communitycare's or both: see ``split``);
* **mailed** - ~85% of those people get a mail piece; most pieces are delivered (~88%), the rest
  come back returned, undeliverable (bad addresses mostly) or forwarded;
* **nudged** - ~40% of the eligible people (only those with a phone) are in one of the month's
  one or two text/call campaigns, split into A/B arms by a hash of their token and the campaign id;
* **called** - ~12% of the mailed people call our call center, more often when the letter arrived,
  more often in the treatment arm (so an A/B readout has an effect to find) and more or less often
  by who they are (household, income, language, programs, a hidden responsiveness: the planted
  signal a response model can find, ``truth``); an unfinished first call gets a callback a few
  days later;
* **applied** - ~70% of the callers apply, on or after a completed call, for one or two of the
  programs they are eligible for;
* **decided** - the state decides every application within the month: ~60% approved, ~25% denied,
  ~15% still pending; ~2% extra decisions concern applications we have no record of.

Every stage draws from its own stream seeded by ``(seed, scale, state, month, stage)``, so the
month is a pure function of those and of the state's person pool.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
from dataclasses import dataclass

import numpy as np

from bdt_platform.synthetic.formats import SECONDS_PER_DAY, day_number
from bdt_platform.synthetic.people import PROGRAMS, PersonPool
from bdt_platform.synthetic import truth
from bdt_platform.synthetic.seeding import rng

ELIGIBLE_PER_SCALE = 300
MAIL_RATE = 0.85
NUDGE_RATE_WITH_PHONE = 0.47  # ~85% have a phone, so ~40% of the eligible are nudged
APPLY_RATE_AFTER_COMPLETED_CALL = 0.75  # ~94% of callers complete a call -> ~70% apply

MAIL_STATUSES = np.array(["delivered", "returned", "undeliverable", "forwarded"], dtype=object)
_STATUS_P_GOOD_ADDRESS = [0.925, 0.025, 0.015, 0.035]
_STATUS_P_BAD_ADDRESS = [0.10, 0.35, 0.50, 0.05]
# Days from mailing to the status, per status: [low, high] inclusive.
_STATUS_LAG = {"delivered": (2, 6), "returned": (9, 24), "undeliverable": (6, 16),
               "forwarded": (5, 12)}
# Chance that a mailed person calls: by what happened to the letter and who they are, plus the
# nudge's lift per arm (truth.py, the planted effects).
_CALL_LIFT = truth.NUDGE_CALL_LIFT

CALL_OUTCOMES = np.array(["completed", "callback_requested", "voicemail", "no_answer"],
                         dtype=object)
_FIRST_CALL_P = [0.72, 0.12, 0.09, 0.07]
_CALLBACK_P = [0.80, 0.0, 0.12, 0.08]

APPLICATION_CHANNELS = np.array(["phone", "web", "mail"], dtype=object)
_APPLICATION_CHANNEL_P = [0.6, 0.3, 0.1]

DECISIONS = np.array(["approved", "denied", "pending"], dtype=object)
_DECISION_P = [0.60, 0.25, 0.15]
UNMATCHED_OUTCOME_RATE = 0.02
# Monthly benefit when approved, in dollars (MEDICAID: the value of the coverage).
BENEFIT_RANGE_USD = {"SNAP": (23, 535), "MEDICAID": (250, 700), "LIHEAP": (50, 300),
                     "WIC": (40, 120), "MSP": (170, 200), "EXTRA_HELP": (30, 120)}

# Campaign templates: (slug, program it promotes, months it runs in or None for all year).
CAMPAIGNS = (
    ("snap-reminder", "SNAP", None),
    ("medicaid-renewal", "MEDICAID", None),
    ("extra-help-intro", "EXTRA_HELP", None),
    ("msp-savings", "MSP", None),
    ("wic-checkin", "WIC", None),
    ("liheap-winter", "LIHEAP", (10, 11, 12, 1, 2, 3)),
    ("liheap-cooling", "LIHEAP", (6, 7, 8)),
)

# Office hours of the call center and the vendors, in UTC (about 9am-6pm US Eastern).
_DAY_START_S, _DAY_END_S = 13 * 3600, 22 * 3600


def arm_for(token: str, campaign_id: str) -> str:
    """A/B arm of a person in a campaign: ``treatment`` when the first byte of
    sha256(``campaign_id|token``) is even, else ``control``. Deterministic, about 50/50."""
    digest = hashlib.sha256(f"{campaign_id}|{token}".encode()).digest()
    return "treatment" if digest[0] % 2 == 0 else "control"


@dataclass(frozen=True)
class MonthActivity:
    """What happened in one state-month. Person columns are indexes into the state's pool; days
    are day numbers, times epoch seconds (UTC), money whole cents."""

    state: str
    month: dt.date
    eligible: np.ndarray               # pool index per eligible person, in pool order
    mail: dict[str, np.ndarray]        # mail_piece_id, person, mailed_day, status, status_day
    nudges: dict[str, np.ndarray]      # event_id, campaign_id, arm, channel, person, event_type,
                                       # event_ts
    calls: dict[str, np.ndarray]       # call_id, person, started, duration, outcome
    applications: dict[str, np.ndarray]  # application_id, person, program, channel, submitted
    outcomes: dict[str, np.ndarray]    # application_id, program, decision, decision_day,
                                       # benefit_cents

    @property
    def tag(self) -> str:
        return f"{self.state}-{self.month:%Y%m}"


def _take(table: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values[index] for name, values in table.items()}


def _ids(prefix: str, n: int, width: int) -> np.ndarray:
    return np.array([f"{prefix}-{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


def _pick(draw: np.random.Generator, choices: np.ndarray, p: list[float], n: int) -> np.ndarray:
    return choices[draw.choice(len(choices), size=n, p=p)]


def _office_time(draw: np.random.Generator, days: np.ndarray) -> np.ndarray:
    """A random second during office hours on each of ``days``."""
    return days * SECONDS_PER_DAY + draw.integers(_DAY_START_S, _DAY_END_S, size=len(days))


#: The stages whose draws are the people's responses (``simulate_month``'s ``outcome_seed``).
OUTCOME_STAGES = ("calls", "applications", "outcomes")


def simulate_month(pool: PersonPool, month: dt.date, *, seed: int, scale: float,
                   outcome_seed: int | None = None) -> MonthActivity:
    """Run the funnel for ``pool.state`` in ``month`` (first of month). ``outcome_seed``: draw
    the responses (``OUTCOME_STAGES``: calls, applications, decisions) from this seed instead,
    keeping who is eligible, mailed and nudged (another outcome of the same month; None: the
    month of ``seed``)."""
    state, scale = pool.state, float(scale)
    yyyymm = f"{month:%Y%m}"
    first_day = day_number(month)
    end_day = first_day + calendar.monthrange(month.year, month.month)[1]  # exclusive
    last_second = end_day * SECONDS_PER_DAY - 1

    def stream(stage: str) -> np.random.Generator:
        if outcome_seed is not None and stage in OUTCOME_STAGES:
            return rng(outcome_seed, scale, state, yyyymm, stage)
        return rng(seed, scale, state, yyyymm, stage)

    # Eligible: a fresh draw of pool members each month, in pool order.
    draw = stream("eligible")
    target = ELIGIBLE_PER_SCALE * scale * draw.uniform(0.92, 1.08)
    n_eligible = int(min(len(pool), max(1, round(target))))
    eligible = np.sort(draw.choice(len(pool), size=n_eligible, replace=False))

    # Mail: one or two mail drops early in the month.
    draw = stream("mail")
    mailed_people = eligible[draw.random(n_eligible) < MAIL_RATE]
    n_mail = len(mailed_people)
    drops = np.sort(draw.choice(np.arange(0, 12), size=draw.integers(1, 3), replace=False))
    mailed_day = first_day + drops[draw.integers(0, len(drops), size=n_mail)]
    bad = pool.bad_address[mailed_people]
    status = np.where(bad, _pick(draw, MAIL_STATUSES, _STATUS_P_BAD_ADDRESS, n_mail),
                      _pick(draw, MAIL_STATUSES, _STATUS_P_GOOD_ADDRESS, n_mail))
    lag_low = np.array([_STATUS_LAG[s][0] for s in status], dtype=np.int64)
    lag_high = np.array([_STATUS_LAG[s][1] for s in status], dtype=np.int64)
    status_day = mailed_day + draw.integers(lag_low, lag_high + 1) if n_mail else mailed_day
    order = np.lexsort((mailed_people, mailed_day))
    mail = _take({"person": mailed_people, "mailed_day": mailed_day, "status": status,
                  "status_day": status_day}, order)
    mail = {"mail_piece_id": _ids(f"MP-{state}-{yyyymm}", n_mail, 6), **mail}

    # Nudges: one or two campaigns; recipients are eligible people with a phone.
    nudges, arm_of, nudge_day = _nudges(stream("nudges"), pool, eligible, state, yyyymm, month,
                                        first_day, last_second)

    # Calls: mailed people call once the letter (or a nudge) reached them.
    draw = stream("calls")
    p_call = np.array([pool.call_p[s][p] for s, p in zip(mail["status"].tolist(),
                                                         mail["person"].tolist())])
    p_call += np.array([_CALL_LIFT.get(arm_of.get(int(p), ""), 0.0) for p in mail["person"]])
    reached = np.where(np.isin(mail["status"], ["delivered", "forwarded"]), mail["status_day"],
                       mail["mailed_day"] + 5)
    nudged_day = np.array([nudge_day.get(int(p), end_day) for p in mail["person"]])
    reached = np.minimum(reached, nudged_day + 1)
    calls_now = (draw.random(n_mail) < p_call) & (reached < end_day)
    callers, available = mail["person"][calls_now], reached[calls_now]
    call_day = available + np.floor(draw.exponential(3.0, size=len(callers))).astype(np.int64)
    late = call_day >= end_day
    call_day[late] = draw.integers(available[late], end_day) if late.any() else call_day[late]
    first_outcome = _pick(draw, CALL_OUTCOMES, _FIRST_CALL_P, len(callers))
    first_start = _office_time(draw, call_day)
    callback_day = call_day + draw.integers(1, 5, size=len(callers))
    has_callback = (first_outcome != "completed") & (callback_day < end_day)
    callback_outcome = _pick(draw, CALL_OUTCOMES, _CALLBACK_P, len(callers))
    callback_start = _office_time(draw, callback_day)
    person = np.concatenate([callers, callers[has_callback]])
    started = np.concatenate([first_start, callback_start[has_callback]])
    outcome = np.concatenate([first_outcome, callback_outcome[has_callback]])
    duration = _call_durations(draw, outcome)
    order = np.lexsort((person, started))
    calls = _take({"person": person, "started": started, "duration": duration,
                   "outcome": outcome}, order)
    calls = {"call_id": _ids(f"CALL-{state}-{yyyymm}", len(person), 6), **calls}

    applications = _applications(stream("applications"), pool, calls, state, yyyymm, last_second)
    outcomes = _outcomes(stream("outcomes"), pool, applications, state, yyyymm, first_day,
                         end_day)
    return MonthActivity(state, month, eligible, mail, nudges, calls, applications, outcomes)


def _call_durations(draw: np.random.Generator, outcome: np.ndarray) -> np.ndarray:
    n = len(outcome)
    completed = np.clip(draw.lognormal(np.log(600.0), 0.5, n), 120, 2700)
    return np.select(
        [outcome == "completed", outcome == "callback_requested", outcome == "voicemail"],
        [completed, draw.integers(45, 241, n), draw.integers(20, 121, n)],
        default=draw.integers(5, 41, n),
    ).astype(np.int64)


def _nudges(draw: np.random.Generator, pool: PersonPool, eligible: np.ndarray, state: str,
            yyyymm: str, month: dt.date, first_day: int, last_second: int,
            ) -> tuple[dict[str, np.ndarray], dict[int, str], dict[int, int]]:
    """Campaign events, and per nudged person their arm and the day they were first contacted."""
    running = [c for c in CAMPAIGNS if c[2] is None or month.month in c[2]]
    chosen = np.sort(draw.choice(len(running), size=draw.integers(1, 3), replace=False))
    campaigns = [running[i] for i in chosen]
    campaign_ids = [f"{state}-{yyyymm}-{slug}" for slug, _, _ in campaigns]
    send_day = first_day + draw.integers(2, 17, size=len(campaigns))
    sms_share = draw.uniform(0.65, 0.9, size=len(campaigns))

    with_phone = eligible[pool.phone[eligible] != ""]
    people = with_phone[draw.random(len(with_phone)) < NUDGE_RATE_WITH_PHONE]
    n = len(people)
    # Prefer the campaign whose program the person is eligible for.
    program_column = [PROGRAMS.index(program) for _, program, _ in campaigns]
    weight = np.where(pool.eligible[people][:, program_column], 3.0, 1.0)
    cumulative = np.cumsum(weight, axis=1)
    u = draw.random(n) * cumulative[:, -1]
    campaign = (u[:, None] >= cumulative).sum(axis=1)
    campaign_id = np.array(campaign_ids, dtype=object)[campaign]
    arm = np.array([arm_for(pool.token[p], c) for p, c in zip(people, campaign_id)],
                   dtype=object)
    channel = np.where(draw.random(n) < sms_share[campaign], "sms", "call").astype(object)
    # Texts go out on the campaign day; calls are spread over three days.
    spread = np.where(channel == "call", draw.integers(0, 3, n), 0)
    sent = _office_time(draw, send_day[campaign] + spread)

    u1, u2 = draw.random(n), draw.random(n)
    is_sms = channel == "sms"
    failed = np.where(is_sms, u1 < 0.05, u1 < 0.15)
    reached_type = np.where(is_sms, "delivered", "call_completed").astype(object)
    reached_at = sent + np.where(is_sms, draw.integers(1, 91, n), draw.integers(45, 901, n))
    failed_at = sent + np.where(is_sms, draw.integers(5, 301, n), draw.integers(20, 61, n))
    reply_p = np.array([truth.REPLY_P.get(a, truth.REPLY_P["control"]) for a in arm])
    opted_out = ~failed & np.where(is_sms, u2 < 0.03, u2 < 0.02)
    replied = ~failed & ~opted_out & is_sms & (u2 < truth.REPLY_P_BASE + reply_p)
    follow_at = reached_at + np.where(is_sms, 20 + draw.exponential(7200.0, n).astype(np.int64), 1)

    idx = np.arange(n)
    rows = [
        (idx, np.full(n, "sent", dtype=object), sent, 0),
        (idx[failed], np.full(failed.sum(), "failed", dtype=object), failed_at[failed], 1),
        (idx[~failed], reached_type[~failed], reached_at[~failed], 1),
        (idx[replied], np.full(replied.sum(), "replied", dtype=object), follow_at[replied], 2),
        (idx[opted_out], np.full(opted_out.sum(), "opted_out", dtype=object),
         follow_at[opted_out], 2),
    ]
    who = np.concatenate([r[0] for r in rows])
    event_type = np.concatenate([r[1] for r in rows])
    event_ts = np.minimum(np.concatenate([r[2] for r in rows]), last_second)
    step = np.concatenate([np.full(len(r[0]), r[3]) for r in rows])
    order = np.lexsort((step, who, event_ts))
    who, event_type, event_ts = who[order], event_type[order], event_ts[order]
    events = {
        "event_id": _ids(f"NV-{state}-{yyyymm}", len(who), 7),
        "campaign_id": campaign_id[who],
        "arm": arm[who],
        "channel": channel[who],
        "person": people[who],
        "event_type": event_type,
        "event_ts": event_ts,
    }
    arm_of = {int(p): a for p, a in zip(people, arm)}
    contacted_day = {int(p): int(s // SECONDS_PER_DAY)
                     for p, s, f in zip(people, sent, failed) if not f}
    return events, arm_of, contacted_day


def _applications(draw: np.random.Generator, pool: PersonPool, calls: dict[str, np.ndarray],
                  state: str, yyyymm: str, last_second: int) -> dict[str, np.ndarray]:
    """Applications filed after a completed call, for one or two eligible programs each."""
    completed = calls["outcome"] == "completed"
    # First completed call per person (calls are in time order).
    people, first = np.unique(calls["person"][completed], return_index=True)
    call_end = (calls["started"][completed] + calls["duration"][completed])[first]
    applies = draw.random(len(people)) < APPLY_RATE_AFTER_COMPLETED_CALL
    people, call_end = people[applies], call_end[applies]
    n = len(people)
    channel = _pick(draw, APPLICATION_CHANNELS, _APPLICATION_CHANNEL_P, n)
    delay = np.select([channel == "phone", channel == "web"],
                      [draw.integers(60, 901, n), draw.integers(3600, 72 * 3600, n)],
                      default=draw.integers(2 * 86400, 6 * 86400, n))
    submitted = np.minimum(call_end + delay, last_second)
    eligible = pool.eligible[people]
    wanted = np.minimum(draw.choice([1, 2], size=n, p=[0.6, 0.4]), eligible.sum(axis=1))
    keys = np.where(eligible, draw.random(eligible.shape), -1.0)
    ranks = np.argsort(np.argsort(-keys, axis=1, kind="stable"), axis=1, kind="stable")
    chosen = eligible & (ranks < wanted[:, None])
    row, program_index = np.nonzero(chosen)
    second = np.concatenate([[False], row[1:] == row[:-1]])
    app_submitted = np.minimum(submitted[row] + second * draw.integers(30, 301, len(row)),
                               last_second)
    table = {"person": people[row], "program": np.array(PROGRAMS, dtype=object)[program_index],
             "channel": channel[row], "submitted": app_submitted}
    table = _take(table, np.lexsort((table["person"], table["submitted"])))
    return {"application_id": _ids(f"APP-{state}-{yyyymm}", len(row), 6), **table}


def _benefit_cents(draw: np.random.Generator, program: np.ndarray,
                   household: np.ndarray) -> np.ndarray:
    low = np.array([BENEFIT_RANGE_USD[p][0] for p in program], dtype=np.int64) * 100
    high = np.array([BENEFIT_RANGE_USD[p][1] for p in program], dtype=np.int64) * 100
    # SNAP grows with the household (the 1-person maximum is about $290).
    snap_cap = np.minimum(535, 120 + 170 * household) * 100
    high = np.where(program == "SNAP", snap_cap, high)
    return draw.integers(low, high + 1) if len(program) else np.zeros(0, dtype=np.int64)


def _outcomes(draw: np.random.Generator, pool: PersonPool, applications: dict[str, np.ndarray],
              state: str, yyyymm: str, first_day: int, end_day: int) -> dict[str, np.ndarray]:
    """The state's decision on each application submitted this month, plus a few it has on
    record that we do not (``APP-X...``: the loader must report them, not drop them)."""
    n = len(applications["application_id"])
    decision = _pick(draw, DECISIONS, _DECISION_P, n)
    submitted_day = applications["submitted"] // SECONDS_PER_DAY
    decision_day = np.minimum(submitted_day + draw.integers(0, 21, n), end_day - 1)
    household = pool.household_size[applications["person"]]
    benefit = np.where(decision == "approved",
                       _benefit_cents(draw, applications["program"], household), 0)

    n_x = int(draw.binomial(n, UNMATCHED_OUTCOME_RATE)) if n else 0
    x_program = np.array(PROGRAMS, dtype=object)[draw.integers(0, len(PROGRAMS), n_x)]
    x_decision = _pick(draw, DECISIONS, _DECISION_P, n_x)
    x_day = draw.integers(first_day, end_day, n_x)
    x_benefit = np.where(x_decision == "approved",
                         _benefit_cents(draw, x_program, draw.integers(1, 5, n_x)), 0)
    table = {
        "application_id": np.concatenate([applications["application_id"],
                                          _ids(f"APP-X-{state}-{yyyymm}", n_x, 4)]),
        "program": np.concatenate([applications["program"], x_program]),
        "decision": np.concatenate([decision, x_decision]),
        "decision_day": np.concatenate([decision_day, x_day]).astype(np.int64),
        "benefit_cents": np.concatenate([benefit, x_benefit]).astype(np.int64),
    }
    return _take(table, np.lexsort((table["application_id"], table["decision_day"])))
