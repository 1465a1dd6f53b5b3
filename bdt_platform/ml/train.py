"""Training, scoring and evaluating the response model: pure functions, deterministic.

The model is a scikit-learn pipeline (standardize, then an L2 logistic regression, lbfgs) over
``features.FEATURES``: no randomness, one BLAS thread while fitting, rows in key order, so the
same rows give the same coefficients and the same pickled bytes (the version's hash).

``plan`` says which versions the warehouse's months allow: a version scores one month, is
evaluated on the latest month before it whose label window has closed (the *test* month, never
seen in training) and is trained on every month before the test month.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import pickle
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from bdt_platform.ml.features import FEATURES, label_complete

if TYPE_CHECKING:  # scikit-learn is imported where a model is fitted or evaluated: importing
    # it costs ~1 s in every process that loads the definitions (the CLI, the webserver).
    from sklearn.pipeline import Pipeline

#: Part of the pickled model: a change of the recipe is a new version even on the same rows.
RECIPE = "logistic-regression/l2/C=1.0/lbfgs/standardized/v1"


@dataclass(frozen=True)
class VersionPlan:
    scored_month: dt.date
    test_month: dt.date
    train_months: tuple[dt.date, ...]


@dataclass(frozen=True)
class Metrics:
    auc: float
    top_decile_lift: float
    brier: float
    n: int
    positives: int


def plan(months: list[dt.date], label_days: int, min_train_months: int = 1
         ) -> list[VersionPlan]:
    """One plan per month of ``months`` that has a complete test month before it and at least
    ``min_train_months`` months before that, in month order."""
    months = sorted(set(months))
    plans = []
    for scored in months:
        complete = [m for m in months if label_complete(m, label_days, scored)]
        if not complete:
            continue
        test = complete[-1]
        train = tuple(m for m in complete if m < test)
        if len(train) >= min_train_months:
            plans.append(VersionPlan(scored, test, train))
    return plans


def matrix(frame: pd.DataFrame) -> np.ndarray:
    """The model's input: ``FEATURES`` and nothing else, as floats, in that order."""
    return frame.loc[:, list(FEATURES)].to_numpy(dtype=np.float64)


def fit(frame: pd.DataFrame, y: np.ndarray) -> Pipeline:
    """Fit the model on ``frame``'s feature columns and the 0/1 labels ``y``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    model = Pipeline([("scale", StandardScaler()),
                      ("logit", LogisticRegression(C=1.0, solver="lbfgs", max_iter=2000))])
    with threadpool_limits(limits=1):
        model.fit(matrix(frame), np.asarray(y, dtype=np.int64))
    return model


def score(model: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """The propensity (probability of applying) of each row; reads ``FEATURES`` only."""
    if frame.empty:
        return np.zeros(0, dtype=np.float64)
    with threadpool_limits(limits=1):
        return model.predict_proba(matrix(frame))[:, 1]


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> float:
    """The label rate among the 10% highest scores (ties broken by row order) over the rate
    of all rows: 1.0 is no better than random targeting."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) == 0 or y.mean() == 0:
        return float("nan")
    order = np.lexsort((np.arange(len(p)), -np.asarray(p)))
    top = order[: max(1, int(np.ceil(len(y) * 0.10)))]
    return float(y[top].mean() / y.mean())


def evaluate(y: np.ndarray, p: np.ndarray) -> Metrics:
    """AUC, top-decile lift and Brier score of the scores ``p`` against the labels ``y``."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    y = np.asarray(y, dtype=np.int64)
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
    return Metrics(auc=auc, top_decile_lift=top_decile_lift(y, p),
                   brier=float(brier_score_loss(y, p)) if len(y) else float("nan"),
                   n=int(len(y)), positives=int(y.sum()))


def promoted(new_auc: float, previous_auc: float | None, margin: float) -> bool:
    """A version is promoted unless its held-out AUC is below the previous version's AUC on
    the same held-out month by more than ``margin`` (or is not a number)."""
    if np.isnan(new_auc):
        return False
    return previous_auc is None or np.isnan(previous_auc) or new_auc >= previous_auc - margin


def serialize(model: Pipeline, version: VersionPlan) -> tuple[bytes, str]:
    """The version's bytes (a pickle of the pipeline, its features, recipe and months) and
    their SHA-256. Same rows, same bytes."""
    payload = {"recipe": RECIPE, "features": list(FEATURES), "model": model,
               "scored_month": version.scored_month.isoformat(),
               "test_month": version.test_month.isoformat(),
               "train_months": [m.isoformat() for m in version.train_months]}
    data = pickle.dumps(payload, protocol=5)
    return data, hashlib.sha256(data).hexdigest()


def deserialize(data: bytes) -> Pipeline:
    """The pipeline of a stored version; refuses one built for other features."""
    payload = pickle.loads(data)  # our own lake file, checked against its recorded hash
    if payload.get("features") != list(FEATURES):
        raise ValueError(f"the stored model reads {payload.get('features')}, not the current "
                         f"features {list(FEATURES)}")
    return payload["model"]


def version_id(version: VersionPlan, sha256: str) -> str:
    """``rm-<scored YYYYMM>-<sha256[:12]>``: names the month it scores and its bytes."""
    return f"rm-{version.scored_month:%Y%m}-{sha256[:12]}"
