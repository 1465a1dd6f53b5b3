"""The response model as Dagster assets: ``ml/response_model`` (its versions, in the lake and
``ml.model_versions``) and ``ml/propensity_scores`` (each state x month's people, scored by the
version in force; what ``outreach/mail_list`` ranks and cuts by).

Lineage: the staging views (eligibility files, case-management applications and clients) ->
``ml/response_model`` -> ``ml/propensity_scores`` -> ``outreach/mail_list``. The model learns
from everyone on the eligibility files with a program to offer, not from our own earlier lists:
those are cut by the model's scores, so learning from them would make the graph circular (and
a rebuild would learn from the lists of the previous build).
"""
# No ``from __future__ import annotations``: Dagster reads the context annotation at definition.

import datetime as dt
import hashlib
import math

import dagster as dg
import pandas as pd
import pyarrow as pa

from bdt_platform.core import partitions as parts
from bdt_platform.feeds.provenance import source_code_version
from bdt_platform.ml import features, train, versions
from bdt_platform.outreach.config import OutreachConfigResource
from bdt_platform.storage.lake import LakeResource
from bdt_platform.core.retries import TRANSIENT_RETRY_POLICY, transient_retries
from bdt_platform.storage.warehouse import WAREHOUSE_POOL, Warehouse

MODEL_KEY = dg.AssetKey(["ml", "response_model"])
SCORES_KEY = dg.AssetKey(["ml", "propensity_scores"])
VERSIONS_TABLE = "ml.model_versions"
SCORES_TABLE = "ml.propensity_scores"
PROMOTION_CHECK = "not_worse_than_previous"
LAKE_FOLDER = ("ml", "response_model")
CODE_VERSION = source_code_version(__file__, features.__file__, train.__file__,
                                   versions.__file__)
UPSTREAM = [dg.AssetKey(["staging", "stg_partners__eligibility"]),
            dg.AssetKey(["staging", "stg_casemgmt__applications"]),
            dg.AssetKey(["staging", "stg_casemgmt__clients"])]

VERSION_COLUMNS = ["model_version", "scored_month", "trained_at", "train_months", "test_month",
                   "auc", "top_decile_lift", "brier", "n_train", "positives_train", "n_test",
                   "positives_test", "previous_version", "previous_auc", "promoted", "sha256",
                   "lake_path", "features", "label_days", "recipe", "inputs_sha256"]
SCORES_SCHEMA = pa.schema([("state", pa.string()), ("month", pa.date32()),
                           ("person_token", pa.string()), ("score", pa.float64()),
                           ("model_version", pa.string())])


def load_tables(warehouse: Warehouse) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The eligibility rows and applications (with the client's person token) the features
    and labels are made of: staging views, so every partition with raw data is there."""
    eligibility = warehouse.query(
        f"select {', '.join(features.ELIGIBILITY_COLUMNS)} "
        "from staging.stg_partners__eligibility where person_token is not null")
    applications = warehouse.query(
        "select c.person_token, a.submitted_at from staging.stg_casemgmt__applications a "
        "join staging.stg_casemgmt__clients c on c.client_id = a.client_id "
        "where c.person_token is not null")
    return eligibility, applications


def _lake_path(model_version: str) -> str:
    return "/".join((*LAKE_FOLDER, f"{model_version}.pkl"))


def store_version(lake: LakeResource, version: versions.TrainedVersion) -> str:
    """Keep the version's bytes at ``ml/response_model/<version>.pkl`` (once; read back and
    checked against its hash); the lake-relative path."""
    relative = _lake_path(version.model_version)
    path = lake.path(relative)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(version.data)
    if hashlib.sha256(path.read_bytes()).hexdigest() != version.sha256:
        raise dg.Failure(f"{relative}: the stored bytes do not match the version's sha256")
    return relative


def load_model(lake: LakeResource, row: pd.Series):
    """The pipeline of an ``ml.model_versions`` row, from the lake, its hash checked."""
    data = lake.path(row["lake_path"]).read_bytes()
    if hashlib.sha256(data).hexdigest() != row["sha256"]:
        raise dg.Failure(f"{row['lake_path']}: the bytes do not match the recorded sha256 of "
                         f"{row['model_version']}")
    return train.deserialize(data)


def _read_versions(warehouse: Warehouse) -> pd.DataFrame:
    if not warehouse.table_exists(VERSIONS_TABLE):
        return pd.DataFrame(columns=VERSION_COLUMNS)
    return warehouse.query(f"select * from {VERSIONS_TABLE} order by scored_month")


def version_rows(trained: list[versions.TrainedVersion], paths: dict[str, str],
                 before: pd.DataFrame, label_days: int, now: dt.datetime) -> pd.DataFrame:
    """``ml.model_versions``: one row per version; a version already recorded keeps its
    ``trained_at`` (same rows, same version, same row)."""
    known = dict(zip(before["model_version"], before["trained_at"]))
    rows = []
    for v in trained:
        rows.append({
            "model_version": v.model_version, "scored_month": v.plan.scored_month,
            "trained_at": pd.Timestamp(known.get(v.model_version, now)),
            "train_months": ",".join(f"{m:%Y-%m}" for m in v.plan.train_months),
            "test_month": v.plan.test_month, "auc": v.metrics.auc,
            "top_decile_lift": v.metrics.top_decile_lift, "brier": v.metrics.brier,
            "n_train": v.n_train, "positives_train": v.positives_train,
            "n_test": v.metrics.n, "positives_test": v.metrics.positives,
            "previous_version": v.previous_version, "previous_auc": v.previous_auc,
            "promoted": v.promoted, "sha256": v.sha256, "lake_path": paths[v.model_version],
            "features": ",".join(features.FEATURES), "label_days": int(label_days),
            "recipe": train.RECIPE, "inputs_sha256": v.inputs_sha256})
    return pd.DataFrame(rows, columns=VERSION_COLUMNS)


def recorded_versions(lake: LakeResource, before: pd.DataFrame):
    """``reuse`` for ``versions.train_versions``: the version recorded in ``before`` (the
    ``ml.model_versions`` rows) with those inputs, its pipeline read back from the lake and
    checked against its sha256; None when there is none (or its bytes are not there)."""
    if "inputs_sha256" not in before.columns:
        return lambda inputs: None  # a table from before versions recorded their inputs
    rows = {row["inputs_sha256"]: row for _, row in before.iterrows()
            if isinstance(row["inputs_sha256"], str) and row["inputs_sha256"]}

    def reuse(inputs: str) -> versions.TrainedVersion | None:
        row = rows.get(inputs)
        if row is None or not lake.path(row["lake_path"]).exists():
            return None
        data = lake.path(row["lake_path"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != row["sha256"]:
            return None
        plan = train.VersionPlan(
            scored_month=pd.Timestamp(row["scored_month"]).date(),
            test_month=pd.Timestamp(row["test_month"]).date(),
            train_months=tuple(parts.parse_month(m) for m in row["train_months"].split(",")))
        previous = row["previous_version"]
        return versions.TrainedVersion(
            plan=plan, model=train.deserialize(data), data=data, sha256=row["sha256"],
            model_version=row["model_version"],
            metrics=train.Metrics(auc=float(row["auc"]),
                                  top_decile_lift=float(row["top_decile_lift"]),
                                  brier=float(row["brier"]), n=int(row["n_test"]),
                                  positives=int(row["positives_test"])),
            n_train=int(row["n_train"]), positives_train=int(row["positives_train"]),
            previous_version=previous if isinstance(previous, str) else None,
            previous_auc=(float(row["previous_auc"]) if _finite(_float(row["previous_auc"]))
                          else None),
            promoted=bool(row["promoted"]), inputs_sha256=inputs)

    return reuse


def _counted(reuse, taken: list):
    """``reuse``, noting in ``taken`` each version it gave back."""
    def counted(inputs: str):
        version = reuse(inputs)
        if version is not None:
            taken.append(version.model_version)
        return version
    return counted


def _float(value):
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _write_whole_table(warehouse: Warehouse, table: str, frame: pd.DataFrame) -> None:
    warehouse.replace_table(table, pa.Table.from_pandas(frame, preserve_index=False))


def _finite(value) -> bool:
    return value is not None and isinstance(value, float) and math.isfinite(value)


@dg.asset(
    # Opens the warehouse: its pool, and retries of transient errors only (core/retries.py).
    retry_policy=TRANSIENT_RETRY_POLICY, pool=WAREHOUSE_POOL,
    key=MODEL_KEY,
    group_name="ml",
    deps=UPSTREAM,
    code_version=CODE_VERSION,
    kinds={"scikitlearn", "duckdb"},
    metadata={"table": VERSIONS_TABLE},
    check_specs=[dg.AssetCheckSpec(PROMOTION_CHECK, asset=MODEL_KEY, description=(
        "The newest version's AUC on its held-out month is not below the previous version's "
        "AUC on that same month by more than model.promotion_margin; a version that fails is "
        "not promoted (the previous one goes on scoring the lists)."))],
)
@transient_retries
def response_model(context: dg.AssetExecutionContext, warehouse: Warehouse, lake: LakeResource,
                   outreach: OutreachConfigResource) -> dg.MaterializeResult:
    """Who is likely to apply after a letter: the response model, one version per month it
    scores (`ml.model_versions`, the pickled pipeline in the lake at
    `ml/response_model/<model_version>.pkl`).

    - Label: applied (a case-management application) within `model.label_days` days of the
      month's mailing (the first of the month), among people on the month's eligibility files
      with a program to offer
    - Features (from the warehouse only, never an SSN or name): household size, monthly
      income, programs to offer and enrolled, preferred language, months since first
      eligible, earlier months on the files, earlier applications
    - A version trains on every month before its held-out month (the latest month before the
      scored month whose label window has closed), never on the held-out month
    - `auc`, `top_decile_lift` (label rate of the top 10% of scores over the overall rate;
      1 = random), `brier` (mean squared error of the probability): on the held-out month
    - `promoted`: false when the AUC is below the previous version's on the same month by more
      than `model.promotion_margin`; the previous version then goes on scoring
    - A version whose inputs are those of one recorded before (`inputs_sha256`: recipe, code,
      months, each month's examples, the version in force before it, the margin) is that
      version, read back from the lake: a new month trains its own version, not all again

    Materialization metadata: the newest version's metrics (plotted across runs).
    """
    config = outreach.load()
    eligibility, applications = load_tables(warehouse)
    frame = features.build_features(eligibility, applications)
    before = _read_versions(warehouse)
    trained = versions.train_versions(frame, applications, label_days=config.label_days,
                                      margin=config.promotion_margin,
                                      min_train_months=config.min_train_months,
                                      reuse=_counted(recorded_versions(lake, before),
                                                     reused := []),
                                      code_version=CODE_VERSION)
    context.log.info(f"{len(trained) - len(reused)} version(s) trained, {len(reused)} taken "
                     "back as made before (the same inputs)")
    paths = {v.model_version: store_version(lake, v) for v in trained}
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None)
    table = version_rows(trained, paths, before, config.label_days, now)
    _write_whole_table(warehouse, VERSIONS_TABLE, table)

    metadata = {"dagster/row_count": len(table), "table": VERSIONS_TABLE,
                "code_version": CODE_VERSION, "versions": len(trained),
                "versions_reused": len(reused),
                "not_promoted": ", ".join(v.model_version for v in trained if not v.promoted)
                or "none"}
    if not trained:
        context.log.warning("no version trained: the warehouse needs a month with a closed "
                            "label window and at least model.min_train_months months before it")
        return dg.MaterializeResult(metadata=metadata, check_results=[dg.AssetCheckResult(
            check_name=PROMOTION_CHECK, passed=True,
            description="no version yet (not enough months of history)")])
    newest = trained[-1]
    m = newest.metrics
    metadata.update({
        "model_version": newest.model_version, "sha256": newest.sha256,
        "lake_path": paths[newest.model_version],
        "scored_month": newest.plan.scored_month.isoformat(),
        "test_month": newest.plan.test_month.isoformat(),
        "train_months": ", ".join(f"{x:%Y-%m}" for x in newest.plan.train_months),
        "n_train": newest.n_train, "n_test": m.n, "positives_test": m.positives,
        "promoted": newest.promoted})
    # Floats only when they are numbers: the UI plots them across materializations.
    for name in ("auc", "top_decile_lift", "brier"):
        value = getattr(m, name)
        if _finite(value):
            metadata[name] = float(value)
    for v in trained:
        context.log.info(f"{v.model_version}: train {len(v.plan.train_months)} month(s), "
                         f"test {v.plan.test_month:%Y-%m}: AUC {v.metrics.auc:.3f}, top-decile "
                         f"lift {v.metrics.top_decile_lift:.2f}, Brier {v.metrics.brier:.4f}; "
                         f"{'promoted' if v.promoted else 'NOT promoted'}")
    previous = ("none" if newest.previous_auc is None
                else f"{newest.previous_version} {newest.previous_auc:.3f}")
    check = dg.AssetCheckResult(
        check_name=PROMOTION_CHECK, passed=newest.promoted,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"{newest.model_version}: AUC {m.auc:.3f} on {newest.plan.test_month:%Y-%m}"
                     f" vs previous {previous} (margin {config.promotion_margin}): "
                     + ("promoted" if newest.promoted else "not promoted")),
        metadata={"auc": float(m.auc) if _finite(m.auc) else 0.0,
                  "previous_auc": (float(newest.previous_auc)
                                   if _finite(newest.previous_auc) else 0.0),
                  "margin": float(config.promotion_margin)})
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


def score_partitions(frame: pd.DataFrame, versions_table: pd.DataFrame,
                     pairs: list[tuple[str, dt.date]], load) -> pd.DataFrame:
    """Every person on the pairs' eligibility files, scored by the version in force for the
    month (``versions.in_force_for``); ``load(row)`` gives a version's pipeline. Months
    without a promoted version get no rows."""
    models: dict[str, object] = {}
    out = []
    for state, month in sorted(pairs, key=lambda p: (p[1], p[0])):
        row = versions.in_force_for(versions_table, month)
        if row is None:
            continue
        rows = frame[(frame["state"] == state) & (frame["month"] == month)]
        if rows.empty:
            continue
        name = row["model_version"]
        if name not in models:
            models[name] = load(row)
        out.append(pd.DataFrame({"state": state, "month": month,
                                 "person_token": rows["person_token"].to_numpy(),
                                 "score": train.score(models[name], rows),
                                 "model_version": name}))
    if not out:
        return pd.DataFrame(columns=SCORES_SCHEMA.names)
    return pd.concat(out, ignore_index=True)


@dg.asset(
    # Opens the warehouse: its pool, and retries of transient errors only (core/retries.py).
    retry_policy=TRANSIENT_RETRY_POLICY, pool=WAREHOUSE_POOL,
    key=SCORES_KEY,
    group_name="ml",
    deps=[MODEL_KEY, *UPSTREAM],
    partitions_def=parts.state_month_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    code_version=CODE_VERSION,
    kinds={"scikitlearn", "duckdb"},
    metadata={"table": SCORES_TABLE},
)
@transient_retries
def propensity_scores(context: dg.AssetExecutionContext, warehouse: Warehouse,
                      lake: LakeResource) -> dg.MaterializeResult:
    """Each person's chance of applying after this month's letter, per state x month: one row
    per person on the month's eligibility files.

    - `score`: the response model's probability (0..1); the mail list mails the highest first
      (`outreach.mail_list` `rank`), except its random-control share
    - `model_version`: the promoted version in force for the month (`ml.model_versions`):
      trained only on months before it; months before the first version have no rows, and
      their lists are ranked by the number of programs to offer
    """
    pairs = [parts.split_key(key) for key in context.partition_keys]
    eligibility, applications = load_tables(warehouse)
    last = max(m for _, m in pairs)
    # A month's rows are made of it and earlier months only, so the rows up to ``last`` of
    # every month's features are those of the months up to ``last``: the model's (the same
    # tables, built once per process) cut, not built again.
    frame = features.build_features(eligibility, applications)
    frame = frame[pd.to_datetime(frame["month"]).dt.date <= last].reset_index(drop=True)
    table = _read_versions(warehouse)
    scored = score_partitions(frame, table, pairs, lambda row: load_model(lake, row))
    arrow = pa.Table.from_pandas(scored, schema=SCORES_SCHEMA, preserve_index=False)
    with warehouse.batch() as batch:
        batch.replace(SCORES_TABLE, arrow, pairs)
    used = sorted(set(scored["model_version"]))
    context.log.info(f"scored {len(scored)} people in {len(pairs)} partition(s) with "
                     f"{', '.join(used) or 'no model yet'}")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(scored), "table": SCORES_TABLE, "code_version": CODE_VERSION,
        "model_versions": ", ".join(used) or "none",
        "partitions_scored": int(scored.groupby(["state", "month"]).ngroups) if len(scored)
        else 0})


ML_ASSETS = [response_model, propensity_scores]
