"""Every version of the response model the warehouse's months allow, with its metrics and
whether it is promoted, as a pure function of the feature rows and the applications.

In month order: a version is trained on its train months' candidates (``features.candidates``),
evaluated on its test month's candidates, and compared with the version in force before it (the
last promoted one) on the *same* test month: promoted unless its AUC there is lower by more than
the margin (``train.promoted``). A version that is not promoted is kept (in the lake and
``ml.model_versions``) but scores nothing; the one in force goes on scoring.

A version whose inputs are those of a version already made (``inputs_sha256``: the recipe, the
training code, its months, the examples of each, the version in force before it and the
margin) is that version: ``train_versions`` takes it back (``reuse``) instead of fitting it
again, so a new month trains the new month's version, not every version again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from typing import TYPE_CHECKING

import pandas as pd

from bdt_platform.ml import features, train

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


@dataclass(frozen=True)
class TrainedVersion:
    plan: train.VersionPlan
    model: Pipeline
    data: bytes
    sha256: str
    model_version: str
    metrics: train.Metrics
    n_train: int
    positives_train: int
    previous_version: str | None
    previous_auc: float | None  # the previous version's AUC on this version's test month
    promoted: bool
    inputs_sha256: str = ""  # what it was made of (``inputs_fingerprint``)


def examples(frame: pd.DataFrame, applications: pd.DataFrame, label_days: int) -> pd.DataFrame:
    """The candidates of ``frame`` with their label (column ``applied``)."""
    rows = features.candidates(frame).reset_index(drop=True)
    rows = rows.assign(applied=features.labels(rows, applications, label_days))
    return rows


def month_digests(rows: pd.DataFrame) -> dict[dt.date, str]:
    """Per month of ``examples`` rows, a sha256 of its examples in row order: each row's
    features and label (what fitting and evaluating read)."""
    columns = [*features.FEATURES, "applied"]
    hashes = pd.util.hash_pandas_object(rows[columns], index=False).to_numpy()
    months = rows["month"].to_numpy()
    found = {}
    for month in sorted(set(months)):
        found[month] = hashlib.sha256(hashes[months == month].tobytes()).hexdigest()
    return found


def inputs_fingerprint(plan: train.VersionPlan, digests: dict[dt.date, str],
                       previous_version: str | None, margin: float, code_version: str) -> str:
    """What a version is made of, as a sha256: equal, the version made of it is the same."""
    digest = hashlib.sha256()
    for part in (train.RECIPE, code_version, ",".join(features.FEATURES),
                 f"{plan.scored_month}|{plan.test_month}", previous_version or "-",
                 repr(float(margin)),
                 *(f"{month}={digests[month]}" for month in (*plan.train_months,
                                                              plan.test_month))):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def train_versions(frame: pd.DataFrame, applications: pd.DataFrame, *, label_days: int,
                   margin: float, min_train_months: int = 1,
                   fit: Callable[[pd.DataFrame, np.ndarray], Pipeline] = train.fit,
                   reuse: Callable[[str], "TrainedVersion | None"] | None = None,
                   code_version: str = ""
                   ) -> list[TrainedVersion]:
    """Train, evaluate and decide on every version ``train.plan`` allows, in month order.
    ``fit(rows, labels)`` trains one version (``train.fit``); ``reuse(inputs_sha256)`` gives
    back a version made before of the same inputs, or None (then it is fitted);
    ``code_version``: the training code's, part of the inputs."""
    rows = examples(frame, applications, label_days)
    months = sorted(set(rows["month"]))
    digests = month_digests(rows) if len(rows) else {}
    out: list[TrainedVersion] = []
    in_force: TrainedVersion | None = None
    for plan in train.plan(months, label_days, min_train_months):
        train_rows = rows[rows["month"].isin(plan.train_months)]
        test_rows = rows[rows["month"] == plan.test_month]
        y_train = train_rows["applied"].to_numpy()
        if not 0 < y_train.sum() < len(y_train) or test_rows.empty:
            continue  # nothing to learn from (one class only)
        inputs = inputs_fingerprint(plan, digests, in_force.model_version if in_force else None,
                                    margin, code_version)
        version = reuse(inputs) if reuse is not None else None
        if version is None:
            version = _trained(plan, train_rows, y_train, test_rows, in_force, margin, fit,
                               inputs)
        out.append(version)
        if version.promoted:
            in_force = version
    return out


def _trained(plan: train.VersionPlan, train_rows: pd.DataFrame, y_train: np.ndarray,
             test_rows: pd.DataFrame, in_force: TrainedVersion | None, margin: float, fit,
             inputs: str) -> TrainedVersion:
    model = fit(train_rows, y_train)
    y_test = test_rows["applied"].to_numpy()
    metrics = train.evaluate(y_test, train.score(model, test_rows))
    previous_auc = None
    if in_force is not None:
        previous_auc = train.evaluate(y_test, train.score(in_force.model, test_rows)).auc
    data, sha = train.serialize(model, plan)
    return TrainedVersion(
        plan=plan, model=model, data=data, sha256=sha,
        model_version=train.version_id(plan, sha), metrics=metrics,
        n_train=int(len(train_rows)), positives_train=int(y_train.sum()),
        previous_version=in_force.model_version if in_force else None,
        previous_auc=previous_auc,
        promoted=train.promoted(metrics.auc, previous_auc, margin), inputs_sha256=inputs)


def in_force_for(versions: pd.DataFrame, month: dt.date) -> pd.Series | None:
    """Of ``ml.model_versions`` rows, the promoted version that scores ``month``: the newest
    promoted one whose scored month is ``month`` or earlier (None: no model yet)."""
    if versions is None or versions.empty:
        return None
    scored = pd.to_datetime(versions["scored_month"]).dt.date
    ok = versions[versions["promoted"].astype(bool) & (scored <= month)]
    if ok.empty:
        return None
    return ok.loc[pd.to_datetime(ok["scored_month"]).idxmax()]
