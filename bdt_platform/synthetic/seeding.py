"""Derived seeds: one independent random stream per (seed, state) and per (seed, state, month).

Every stream is seeded from a CRC-32 of a readable label such as ``"42|PA|2024-03|mail"`` rather
than from Python's ``hash()`` (salted per process) or from a shared global stream. So the rows for
Pennsylvania in March 2024 depend only on the seed, the scale, the state and the month: generating
PA alone, or PA among fifty other states, or March alone, or March among other months, gives the
same bytes.
"""

from __future__ import annotations

import zlib

import numpy as np
from faker import Faker


def derive_seed(*parts: object) -> int:
    """A stable 32-bit integer from a label made of ``parts``: ``derive_seed(42, "PA", "pool")``."""
    return zlib.crc32("|".join(str(part) for part in parts).encode("utf-8"))


def rng(*parts: object) -> np.random.Generator:
    """A numpy generator for one named stream (see ``derive_seed``)."""
    return np.random.default_rng(derive_seed(*parts))


def faker(locale: str, *parts: object) -> Faker:
    """A Faker instance for ``locale`` whose stream is seeded from ``parts`` only."""
    fake = Faker(locale)
    fake.seed_instance(derive_seed(locale, *parts))
    return fake
