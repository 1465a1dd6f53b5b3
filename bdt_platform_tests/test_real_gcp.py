"""The same storage code against real Google Cloud, when an operator's credentials are present.

Runs only with ``BDT_GCP_PROJECT``, ``BDT_GCS_BUCKET`` and application-default credentials
(``GOOGLE_APPLICATION_CREDENTIALS`` or ``gcloud auth application-default login``); otherwise it
is skipped with the reason in pytest's summary. It writes under ``gs://$BDT_GCS_BUCKET/
bdt-platform-tests/<random>/`` and into a throwaway dataset ``bdt_platform_test_<random>`` (both
removed afterwards); the warehouse also makes sure the platform's datasets exist (``raw``,
``staging``, ``intermediate``, ``marts``, ``reports``), as it does in production.
"""

import datetime as dt
import hashlib
import os
import uuid
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest
from upath import UPath

from bdt_platform.core import partitions as parts
from bdt_platform.storage.bigquery import BigQueryWarehouse
from bdt_platform.storage.lake import LakeResource
from bdt_platform.storage.lake_io import LakeIOManager

from .test_bigquery_warehouse import CAP, _ids, _rows, recorder  # noqa: F401 - fixture

M1 = dt.date(2024, 1, 1)


def _missing() -> str | None:
    wanted = [name for name in ("BDT_GCP_PROJECT", "BDT_GCS_BUCKET") if not os.environ.get(name)]
    if wanted:
        return f"set {' and '.join(wanted)} to run against real Google Cloud"
    if os.environ.get("STORAGE_EMULATOR_HOST") or os.environ.get("BIGQUERY_EMULATOR_HOST"):
        return "an emulator variable is set; this test is for real Google Cloud"
    adc = Path(os.environ.get("CLOUDSDK_CONFIG") or Path.home() / ".config" / "gcloud")
    if not (os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
            or (adc / "application_default_credentials.json").exists()):
        return ("no application-default credentials (GOOGLE_APPLICATION_CREDENTIALS or "
                "`gcloud auth application-default login`)")
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=f"real GCP: {_missing()}")


@pytest.fixture(scope="module")
def project() -> str:
    return os.environ["BDT_GCP_PROJECT"]


@pytest.fixture
def lake_root():
    root = f"gs://{os.environ['BDT_GCS_BUCKET']}/bdt-platform-tests/{uuid.uuid4().hex[:10]}"
    yield root
    path = UPath(root)
    if path.exists():
        path.fs.rm(path.path, recursive=True)


@pytest.fixture
def warehouse(project):
    warehouse = BigQueryWarehouse(project=project, location=os.environ.get("BDT_BQ_LOCATION"),
                                  max_bytes_billed=CAP)
    dataset = f"bdt_platform_test_{uuid.uuid4().hex[:10]}"
    warehouse.client().create_dataset(dataset)
    yield warehouse, dataset
    warehouse.client().delete_dataset(dataset, delete_contents=True, not_found_ok=True)


def test_lake_on_gcs(lake_root):
    @dg.asset(key=["lake", "probe"], partitions_def=parts.state_month_partitions)
    def probe(context: dg.AssetExecutionContext) -> pd.DataFrame:
        state, month = parts.split_key(context.partition_key)
        return pd.DataFrame({"state": [state], "month": [month], "value": [1.5]})

    seen = {}

    @dg.asset(partitions_def=parts.state_month_partitions,
              ins={"probe": dg.AssetIn(key=["lake", "probe"])})
    def reader(probe: pa.Table) -> None:
        seen["probe"] = probe

    result = dg.materialize([probe, reader], partition_key=parts.partition_key("PA", M1),
                            resources={"io_manager": LakeIOManager(root=lake_root)})
    assert result.success and seen["probe"].num_rows == 1
    assert UPath(lake_root, "probe", "month=2024-01", "state=PA.parquet").exists()
    data = os.urandom(4096)
    archived = LakeResource(root=lake_root).archive("eligibility", "PA", M1, "x.csv", data,
                                                    dt.datetime.now(dt.timezone.utc))
    back = UPath(lake_root, archived.path).read_bytes()
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()


def test_warehouse_on_bigquery(warehouse, recorder):
    warehouse, dataset = warehouse
    table = f"{dataset}.t"
    for _ in range(2):  # a retried load
        warehouse.replace_partitions(table, _rows("PA", M1, ["a", "b"]), [("PA", M1)])
    warehouse.replace_partitions(table, _rows("NJ", M1, ["c"]), [("NJ", M1)])
    assert _ids(warehouse, table) == [("NJ", M1, "c"), ("PA", M1, "a"), ("PA", M1, "b")]
    created = warehouse.client().get_table(f"{warehouse.project}.{table}")
    assert created.time_partitioning.type_ == "MONTH" and created.time_partitioning.field == "month"
    assert created.clustering_fields == ["state"]
    queries = recorder.configurations("query")
    assert queries and all(int(q["query"]["maximumBytesBilled"]) == CAP for q in queries)
    assert all(q["labels"]["app"] == "bdt-platform" for q in queries)
