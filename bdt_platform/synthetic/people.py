"""The people of one state: a fixed pool the monthly feeds draw from.

The partners' eligibility lists, our mail and nudge campaigns, the calls and applications in case
management and the state's decisions are all about the *same* people, and the same people recur
from month to month (a household stays eligible for a while). So each state gets one pool of
people, built once from ``(seed, scale, state)``; a month's rows are a random draw of pool members.
The pool does not depend on which or how many months are generated, so March's files are the same
whether March is generated alone or within a year.

Names come from Faker: en_US for most people, es_MX/es_ES for a Hispanic share (most of whom
prefer Spanish), zh_CN (romanized) and vi_VN for a few Chinese and Vietnamese speakers. Faker is
slow per call, so it fills small vocabularies (names nationally, cities, ZIP codes and street
names per state) that numpy then combines per person.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from bdt_platform.core.partitions import STATES
from bdt_platform.core.pii import person_token
from bdt_platform.synthetic.formats import dates, day_number
from bdt_platform.synthetic import truth
from bdt_platform.synthetic.seeding import faker, rng

PROGRAMS = ("SNAP", "MEDICAID", "LIHEAP", "WIC", "MSP", "EXTRA_HELP")

# Pool members per state at scale 1. A month's eligibility file holds ~300 of them, so a person
# appears in about a quarter of the months.
POOL_PER_SCALE = 1200
MIN_POOL = 40

# Name origin groups: (label, share of people, share of the group whose preferred language is
# the group's own, that language).
_GROUPS = (("en", 0.80, 1.0, "en"), ("es", 0.15, 0.75, "es"), ("zh", 0.025, 0.70, "zh"),
           ("vi", 0.025, 0.70, "vi"))
_EMAIL_DOMAINS = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "aol.com",
                  "icloud.com", "comcast.net")
_EMAIL_WEIGHTS = (0.46, 0.20, 0.10, 0.10, 0.06, 0.05, 0.03)
_UNIT_WORDS = ("Apt.", "Apt", "Unit", "Suite", "#", "Fl")
# SSN area numbers 001-899 except 666, handed out to states in blocks of 17 (as area numbers once
# were by state); this keeps every state's SSNs distinct from every other state's.
_SSN_AREAS = tuple(a for a in range(1, 900) if a != 666)
_AREAS_PER_STATE = 17
_SSN_PER_AREA = 99 * 9999
# Geographic area codes look like NXX: no N11 service codes, no 9 in the middle, no toll-free.
_AREA_CODES = np.array([n * 100 + x for n in range(2, 10) for x in range(90)
                        if x != 11 and n * 100 + x not in (800, 822, 833, 844, 855, 866, 877, 888)])
# Age reference for program eligibility (Medicare age, WIC age): mid-2024.
_AGE_REFERENCE = day_number(dt.date(2024, 7, 1))


@dataclass(frozen=True)
class NameVocabulary:
    """First and last names for one origin group, with repeats in proportion to frequency."""

    first: np.ndarray
    last: np.ndarray


@dataclass(frozen=True)
class PersonPool:
    """Everyone a state's partners and our programs may ever mention, one array entry per person.

    String columns are numpy object arrays spelled exactly as the files spell them (``''`` for
    empty); ``date_of_birth`` is ISO text; ``income_cents`` is the monthly household income;
    ``eligible`` is a boolean matrix (person x ``PROGRAMS``); ``bad_address`` marks the addresses
    the post office cannot deliver to; ``token`` is the person token (``pii.person_token``) that
    vendors see instead of the person. ``responsiveness`` (hidden, in no file) and ``call_p``
    (per letter status, the chance the person calls after a letter) are the planted response
    signal of ``truth``.
    """

    state: str
    client_id: np.ndarray
    first_name: np.ndarray
    last_name: np.ndarray
    ssn: np.ndarray
    date_of_birth: np.ndarray
    address_line1: np.ndarray
    address_line2: np.ndarray
    city: np.ndarray
    zip: np.ndarray
    phone: np.ndarray
    email: np.ndarray
    language: np.ndarray
    household_size: np.ndarray
    income_cents: np.ndarray
    eligible: np.ndarray
    programs_eligible: np.ndarray
    programs_enrolled: np.ndarray
    bad_address: np.ndarray
    token: np.ndarray
    responsiveness: np.ndarray
    call_p: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.client_id)


def pool_size(scale: float) -> int:
    """People per state for ``scale`` (independent of the number of months generated)."""
    return max(MIN_POOL, math.ceil(POOL_PER_SCALE * scale))


@lru_cache(maxsize=4)
def name_vocabularies(seed: int) -> dict[str, NameVocabulary]:
    """National name lists per origin group, drawn once per seed (shared by every state)."""
    en = faker("en_US", seed, "names")
    mx, es = faker("es_MX", seed, "names"), faker("es_ES", seed, "names")
    zh, vi = faker("zh_CN", seed, "names"), faker("vi_VN", seed, "names")

    def spanish_last(fake) -> str:
        # About a quarter carry both surnames ("García López").
        if fake.random.random() < 0.25:
            return f"{fake.last_name()} {fake.last_name()}"
        return fake.last_name()

    def vi_first() -> str:
        return vi.first_name_female() if vi.random.random() < 0.5 else vi.first_name_male()

    def arr(values: list[str]) -> np.ndarray:
        return np.array(values, dtype=object)

    return {
        "en": NameVocabulary(arr([en.first_name() for _ in range(1500)]),
                             arr([en.last_name() for _ in range(1500)])),
        "es": NameVocabulary(arr([mx.first_name() for _ in range(240)]
                                 + [es.first_name() for _ in range(80)]),
                             arr([spanish_last(mx) for _ in range(240)]
                                 + [spanish_last(es) for _ in range(80)])),
        "zh": NameVocabulary(arr([zh.first_romanized_name() for _ in range(120)]),
                             arr([zh.last_romanized_name() for _ in range(120)])),
        "vi": NameVocabulary(arr([vi_first() for _ in range(120)]),
                             arr([vi.last_name() for _ in range(120)])),
    }


@dataclass(frozen=True)
class Geography:
    """A state's towns (with their ZIP codes and how populous they are), streets, area codes."""

    cities: list[str]
    city_weights: np.ndarray
    city_zips: list[list[str]]
    streets: np.ndarray
    area_codes: np.ndarray


def state_geography(seed: int, state: str) -> Geography:
    """Faker-made towns and streets for ``state``; ZIP codes really belong to the state."""
    fake = faker("en_US", seed, state, "geography")
    draw = rng(seed, state, "geography")
    n_cities = 1 if state == "DC" else 30
    cities = ["Washington"] if state == "DC" else []
    while len(cities) < n_cities:
        city = fake.city()
        if city not in cities:
            cities.append(city)
    weights = 1.0 / np.arange(1, n_cities + 1) ** 1.1  # a few big towns, many small ones
    city_zips = [sorted({fake.zipcode_in_state(state) for _ in range(1 + rank_zips)})
                 for rank_zips in draw.integers(0, 4, size=n_cities)]
    # Faker's en_US street names are "<name> <suffix>"; compose them from the national name
    # list (Faker's name calls are slow) and Faker's street suffixes.
    vocab = name_vocabularies(seed)["en"]
    street_names = np.where(draw.random(200) < 0.6,
                            vocab.last[draw.integers(0, len(vocab.last), 200)],
                            vocab.first[draw.integers(0, len(vocab.first), 200)])
    streets = np.array(sorted({f"{name} {fake.street_suffix()}" for name in street_names}),
                       dtype=object)
    area_codes = draw.choice(_AREA_CODES, size=4, replace=False)
    return Geography(cities, weights / weights.sum(), city_zips, streets, area_codes)


def _ascii_word(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _email(first: str, last: str, style: int, number: int, domain: str) -> str:
    f, l = _ascii_word(first) or "mail", _ascii_word(last) or "box"
    local = (f"{f}.{l}", f"{f}{l}{number}", f"{f[0]}{l}{number}", f"{l}.{f}{number}",
             f"{f}_{l}")[style]
    return f"{local}@{domain}"


def _program_weights(age: np.ndarray, household: np.ndarray) -> np.ndarray:
    """How likely each person is to be found eligible for each program (person x PROGRAMS)."""
    senior = age >= 65
    young_family = (age >= 18) & (age < 45) & (household >= 2)
    n = len(age)
    return np.column_stack([
        np.full(n, 3.0),                       # SNAP: broadly
        np.where(senior, 0.6, 2.5),            # MEDICAID: mostly under 65
        np.full(n, 1.5),                       # LIHEAP: energy assistance
        np.where(young_family, 2.0, 0.0),      # WIC: families with young children
        np.where(senior, 2.5, 0.0),            # MSP: Medicare beneficiaries
        np.where(senior, 2.5, 0.0),            # EXTRA_HELP: Medicare Part D
    ])


def _program_text(mask_row: np.ndarray) -> str:
    return ";".join(code for code, on in zip(PROGRAMS, mask_row) if on)


def build_pool(state: str, *, seed: int, scale: float, pii_key: str) -> PersonPool:
    """The pool of people for ``state``; a pure function of its arguments."""
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}")
    scale = float(scale)
    n = pool_size(scale)
    draw = rng(seed, scale, state, "people")
    geo = state_geography(seed, state)
    vocab = name_vocabularies(seed)

    # Names and language.
    group = draw.choice(len(_GROUPS), size=n, p=[g[1] for g in _GROUPS])
    first = np.empty(n, dtype=object)
    last = np.empty(n, dtype=object)
    language = np.full(n, "en", dtype=object)
    for g, (label, _share, own_language_share, own_language) in enumerate(_GROUPS):
        members = np.flatnonzero(group == g)
        words = vocab[label]
        first[members] = words.first[draw.integers(0, len(words.first), size=len(members))]
        last[members] = words.last[draw.integers(0, len(words.last), size=len(members))]
        speaks = draw.random(len(members)) < own_language_share
        language[members[speaks]] = own_language

    # Age, household, income.
    senior = draw.random(n) < 0.35
    dob = np.where(
        senior,
        draw.integers(day_number(dt.date(1930, 1, 1)), day_number(dt.date(1959, 12, 31)) + 1, n),
        draw.integers(day_number(dt.date(1960, 1, 1)), day_number(dt.date(2005, 12, 31)) + 1, n),
    )
    household = np.where(
        senior,
        draw.choice(np.arange(1, 9), size=n, p=[.55, .33, .06, .03, .01, .01, .005, .005]),
        draw.choice(np.arange(1, 9), size=n, p=[.20, .22, .20, .17, .10, .06, .03, .02]),
    )
    median_dollars = np.where(senior, 1150.0, 850.0) + 320.0 * (household - 1)
    income = np.minimum(median_dollars * draw.lognormal(0.0, 0.45, n), 7500.0)
    income_cents = np.where(draw.random(n) < 0.07, 0, np.round(income * 100)).astype(np.int64)

    # Programs: 1-3 eligible (weighted, without replacement, via Gumbel top-k), and perhaps
    # enrolled in some of the other plausible ones already.
    age = (_AGE_REFERENCE - dob) / 365.25
    weights = _program_weights(age, household)
    with np.errstate(divide="ignore"):
        keys = np.log(weights) + draw.gumbel(size=weights.shape)
    k = draw.choice([1, 2, 3], size=n, p=[0.5, 0.35, 0.15])
    ranks = np.argsort(np.argsort(-keys, axis=1, kind="stable"), axis=1, kind="stable")
    eligible = ranks < k[:, None]
    enrolled = (~eligible) & (weights > 0) & (draw.random(weights.shape) < 0.18)

    # SSN: 90% known; unique within the state and disjoint between states.
    block = STATES.index(state) * _AREAS_PER_STATE
    codes = draw.choice(_AREAS_PER_STATE * _SSN_PER_AREA, size=n, replace=False)
    area = np.array(_SSN_AREAS)[block + codes // _SSN_PER_AREA]
    group_no, serial = (codes % _SSN_PER_AREA) // 9999 + 1, codes % 9999 + 1
    has_ssn = draw.random(n) < 0.90

    # Address.
    number = np.exp(draw.uniform(np.log(3.0), np.log(9999.0), n)).astype(np.int64)
    street = geo.streets[draw.integers(0, len(geo.streets), n)]
    city_index = draw.choice(len(geo.cities), size=n, p=geo.city_weights)
    zip_pick = draw.integers(0, 1_000_000, n)
    plus4 = draw.integers(1, 10_000, n)
    has_plus4 = draw.random(n) < 0.20
    has_unit = draw.random(n) < 0.15
    unit_word = draw.integers(0, len(_UNIT_WORDS), n)
    unit_no = draw.integers(1, 400, n)
    unit_letter = draw.random(n) < 0.3

    # Contact.
    has_phone = draw.random(n) < 0.85
    phone_area = geo.area_codes[draw.integers(0, len(geo.area_codes), n)]
    exchange = draw.integers(200, 1000, n)
    line = draw.integers(0, 10_000, n)
    has_email = draw.random(n) < 0.60
    email_style = draw.integers(0, 5, n)
    email_number = draw.integers(1, 100, n)
    email_domain = draw.choice(len(_EMAIL_DOMAINS), size=n, p=_EMAIL_WEIGHTS)
    bad_address = draw.random(n) < 0.06

    ssn = np.array([f"{a:03d}{g:02d}{s:04d}" if ok else ""
                    for a, g, s, ok in zip(area, group_no, serial, has_ssn)], dtype=object)
    dob_text = np.array(dates(dob), dtype=object)
    city = np.array(geo.cities, dtype=object)[city_index]
    zips = []
    for c, pick, p4, with_p4 in zip(city_index, zip_pick, plus4, has_plus4):
        options = geo.city_zips[c]
        z = options[pick % len(options)]
        zips.append(f"{z}-{p4:04d}" if with_p4 else z)
    line2 = [
        (f"{_UNIT_WORDS[w]} {u}{'ABCD'[u % 4] if letter else ''}" if unit else "")
        for unit, w, u, letter in zip(has_unit, unit_word, unit_no, unit_letter)
    ]
    phone = [f"{a}{e}{ln:04d}" if ok else "" for a, e, ln, ok in
             zip(phone_area, exchange, line, has_phone)]
    email = [_email(f, l, s, num, _EMAIL_DOMAINS[d]) if ok else ""
             for f, l, s, num, d, ok in zip(first, last, email_style, email_number, email_domain,
                                             has_email)]
    tokens = [person_token(pii_key, s, f, l, b, z)
              for s, f, l, b, z in zip(ssn, first, last, dob_text, zips)]
    client_ids = [f"CL-{state}-" + hashlib.sha256(f"{seed}|{scale}|{state}|{i}".encode())
                  .hexdigest()[:10].upper() for i in range(n)]

    def obj(values) -> np.ndarray:
        return np.array(values, dtype=object)

    # The planted response signal (truth.py), from a stream of its own: the draws above, and
    # so every file, are the same as without it.
    hidden = truth.responsiveness(rng(seed, scale, state, "responsiveness"), n)
    log_odds = truth.person_log_odds(household, income_cents, language, eligible.sum(axis=1),
                                     hidden)

    return PersonPool(
        state=state,
        client_id=obj(client_ids),
        first_name=first,
        last_name=last,
        ssn=ssn,
        date_of_birth=dob_text,
        address_line1=obj([f"{num} {s}" for num, s in zip(number, street)]),
        address_line2=obj(line2),
        city=city,
        zip=obj(zips),
        phone=obj(phone),
        email=obj(email),
        language=language,
        household_size=household.astype(np.int64),
        income_cents=income_cents,
        eligible=eligible,
        programs_eligible=obj([_program_text(row) for row in eligible]),
        programs_enrolled=obj([_program_text(row) for row in enrolled]),
        bad_address=bad_address,
        token=obj(tokens),
        responsiveness=hidden,
        call_p=truth.calibrated_call_p(log_odds, log_odds),
    )
