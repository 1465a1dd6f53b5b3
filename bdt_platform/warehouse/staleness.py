"""Which partitions a ``bdt build`` must build: Dagster's data and code versions, compared.

A partition (state x month) is **up to date** when all of this holds, and is then skipped:

- the newest ``build_warehouse`` run that covered it (its partition range tags) succeeded, and
  ran today's code: the run carries ``CODE_TAG``, a fingerprint of the code version of every
  asset ``bdt build`` runs (dagster-dbt's model code versions, the report and outreach assets'
  source hashes), of the dbt macros and of the outreach configuration (``code_fingerprint``);
- the newest ``export_reports`` run that covered it succeeded, after that build run; the newest
  ``build_readouts`` and ``publish_usage`` runs succeeded, after the newest build run;
- no raw input that reaches it has a new **data version** since that build: each raw partition's
  materialization carries a ``dg.DataVersion`` of the files (or extract) it holds rows of and
  the load code (``feeds.provenance.partition_version_tags``); a raw partition materialized
  again after the build (its latest storage id is past the build's fact materializations) is
  changed only if its data version differs from the one it had before the build - the
  comparison Dagster's own ``CachingStaleStatusResolver._is_dep_updated`` makes for partitioned
  dependencies. Loading the same files again changes nothing.

Why not Dagster's stale status itself: between the raw feeds and the partitioned facts sit
unpartitioned dbt views (staging, intermediate), and Dagster does not follow a dependency with
100 or more upstream partitions (``SKIP_PARTITION_DATA_VERSION_DEPENDENCY_THRESHOLD``): the views
record only the latest raw event's version, so a fact partition never turns stale when its own
raw partition changes. The same records, compared per partition here, do see it.

How far a changed raw partition reaches (``REACH``) follows what the models and assets read
across partitions: the mail list of a month reads approvals, opt-outs and the vendor's returns of
every state known by that month (their files' months up to the list's), and the lists of
earlier months; a case-management client or application is joined by id into the facts of the
months from its own (a client's calls and applications, an application's outcomes, come after
it). A case-management partition whose ``join_columns`` are unchanged (a returning client's
``updated_at``, when they call again) reaches only ``WITHIN`` (``provenance.JOIN_VERSION_KEY``,
compared like the data version): for clients no partitioned model at all, only the
unpartitioned ones (``dim_person``), which the build of any partition runs - so when nothing
else is stale, the newest partition is built for them.

Cost: a few indexed event-log queries per asset (the latest storage id and data version of
every partition at once, ``get_latest_storage_id_by_partition`` and
``get_latest_tags_by_partition``) and one page of run records per job, whatever the number
of partitions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from bdt_platform.core import partitions as parts
from bdt_platform.feeds.provenance import CODE_VERSION_TAG, DATA_VERSION_TAG, JOIN_VERSION_KEY
from bdt_platform.feeds.specs import ALL_SPECS

#: The run tag that records the code a ``bdt build`` run ran with (``code_fingerprint``).
CODE_TAG = "bdt/code_fingerprint"
#: The run tag with the hash of the sources those code versions come from
#: (``source_fingerprint``): equal, the code versions are too, known without the definitions.
SOURCE_TAG = "bdt/source_fingerprint"
#: The run tag of a forced build (``bdt build --force``): the incremental ``dim_person`` computes
#: every person again from their whole history, not only those whose rows changed.
RECOMPUTE_TAG = "bdt/recompute"

Pair = tuple[str, dt.date]


def _partition_only(changed: Pair, other: Pair) -> bool:
    return other == changed


def _later_months(changed: Pair, other: Pair) -> bool:
    return other == changed or other[1] > changed[1]


def _from_month(changed: Pair, other: Pair) -> bool:
    return other[1] >= changed[1]


def _no_partition(changed: Pair, other: Pair) -> bool:
    return False


#: Per raw feed: does a change of its partition ``changed`` make partition ``other`` stale.
REACH: dict[str, Callable[[Pair, Pair], bool]] = {
    # Its partition's facts, report and lists; the mail lists of later months (every state)
    # read the earlier months' lists.
    "eligibility": _later_months,
    # Approvals up to a list's month, of every state, keep people off the mail list.
    "outcomes": _from_month,
    # Opt-outs up to a list's month, of every state, keep people off the lists.
    "nudges": _from_month,
    # Its partition's outreach fact; the mail lists from its month on read the returns of the
    # vendor's files up to theirs (a list is made with the returns known by its month).
    "mailreturns": _from_month,
    # A client's person token is joined into its calls', applications' and outcomes' facts,
    # all from the month the client was created (the partition's month) on.
    "clients": _from_month,
    # Its partition's applications fact; an application's client and program are joined into
    # the outcomes of its month and later.
    "applications": _from_month,
    # Only its partition's calls fact (the readout, across months, is rebuilt by every build).
    "calls": _partition_only,
}
assert set(REACH) == set(ALL_SPECS), "every raw feed needs its reach"

#: For the feeds with ``join_columns``: the reach of a change that left those columns as they
#: were (the partition's ``JOIN_VERSION_KEY`` unchanged).
WITHIN: dict[str, Callable[[Pair, Pair], bool]] = {
    # Read only by the unpartitioned dim_person (``updated_at`` orders a person's versions).
    "clients": _no_partition,
    # Its own applications fact (channel, submitted_at).
    "applications": _partition_only,
}
assert set(WITHIN) == {name for name, spec in ALL_SPECS.items() if spec.join_columns}


@dataclass
class BuildPlan:
    """What a build of ``chosen`` must do: the partitions to build, each with why, and the
    rest, up to date."""

    chosen: list[Pair]
    stale: dict[Pair, str] = field(default_factory=dict)
    since_run: str | None = None  # the newest build run the up-to-date partitions rest on

    @property
    def up_to_date(self) -> list[Pair]:
        return [pair for pair in self.chosen if pair not in self.stale]

    @property
    def to_build(self) -> list[Pair]:
        return [pair for pair in self.chosen if pair in self.stale]

    def reasons(self, shown: int = 5) -> list[str]:
        """The reasons, most common first, each with how many partitions and a few of them."""
        by_reason: dict[str, list[Pair]] = {}
        for pair in self.to_build:
            by_reason.setdefault(self.stale[pair], []).append(pair)
        lines = []
        for reason, pairs in sorted(by_reason.items(), key=lambda item: -len(item[1])):
            named = ", ".join(f"{s} {m:%Y-%m}" for s, m in pairs[:shown])
            more = f" and {len(pairs) - shown} more" if len(pairs) > shown else ""
            lines.append(f"{len(pairs)} partition(s) {reason}: {named}{more}")
        return lines


def code_fingerprint(defs: dg.Definitions, job_names: Iterable[str],
                     extra_files: Iterable[Path] = ()) -> str:
    """A sha256 (16 hex) of the code version of every asset of ``job_names`` (dagster-dbt's
    per-model versions included) and of the bytes of ``extra_files`` (what shapes the results
    but has no code version of its own: dbt macros, configuration files)."""
    digest = hashlib.sha256()
    for key, version in sorted(code_versions(defs, job_names).items(), key=lambda i: str(i[0])):
        digest.update(f"{key.to_user_string()}={version}\n".encode())
    for path in sorted(Path(p) for p in extra_files):
        digest.update(f"{path.name}:".encode() + (path.read_bytes() if path.is_file() else b"")
                      + b"\n")
    return digest.hexdigest()[:16]


def code_versions(defs: dg.Definitions, job_names: Iterable[str]) -> dict[dg.AssetKey, str]:
    graph = defs.resolve_asset_graph()
    found = {}
    for job_name in job_names:
        for key in defs.resolve_job_def(job_name).asset_layer.selected_asset_keys:
            found[key] = graph.get(key).code_version or ""
    return found


def plan_build(defs: dg.Definitions, instance: dg.DagsterInstance, chosen: list[Pair],
               fingerprint: str, build_job: str, export_job: str,
               after_jobs: Iterable[str]) -> BuildPlan:
    """Which of ``chosen`` must be built (see the module docstring); ``after_jobs``: the
    unpartitioned jobs every build runs after its build runs."""
    after_jobs = list(after_jobs)
    return compare(instance, chosen, _fact_keys(defs, build_job), CODE_TAG, fingerprint,
                   build_job, export_job, after_jobs,
                   _fact_keys(defs, build_job, partitioned=False),
                   what_changed=lambda: _changed_code_names(defs, instance,
                                               [build_job, export_job, *after_jobs]))


def compare(instance: dg.DagsterInstance, chosen: list[Pair], fact_keys: list[dg.AssetKey],
            tag: str, fingerprint: str, build_job: str, export_job: str,
            after_jobs: list[str], model_keys: list[dg.AssetKey] = (),
            what_changed: Callable[[], str] | None = None) -> BuildPlan:
    """``plan_build`` with the build's partitioned dbt models (``fact_keys``), its unpartitioned
    ones (``model_keys``) and the run tag ``tag`` that must equal ``fingerprint`` given: with
    ``SOURCE_TAG`` and the manifest's models (``fact_keys_from_manifest``) it needs no
    definitions."""
    plan = BuildPlan(list(chosen))
    todo = set(chosen)
    built = _newest_covering_runs(instance, build_job, todo)
    exported = _newest_covering_runs(instance, export_job, todo)
    newest_build = max(built.values(), key=lambda r: r.storage_id, default=None)
    plan.since_run = newest_build.dagster_run.run_id if newest_build else None
    unfinished = [job for job in after_jobs if not _finished_after(instance, job, newest_build)]
    changed_code = None
    for pair in chosen:
        run = built.get(pair)
        if run is None:
            plan.stale[pair] = "never built"
        elif run.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
            plan.stale[pair] = f"not built by their last build run ({_short(run)} " \
                               f"{run.dagster_run.status.value.lower()})"
        elif tag not in run.dagster_run.tags:
            plan.stale[pair] = (f"built by a run that recorded no code fingerprint "
                                f"({_short(run)}: not `bdt build`, e.g. the UI)")
        elif run.dagster_run.tags[tag] != fingerprint:
            if changed_code is None:
                changed_code = what_changed() if what_changed else "its sources changed"
            plan.stale[pair] = f"built with other code ({changed_code})"
        elif (pair not in exported or exported[pair].storage_id < run.storage_id
              or exported[pair].dagster_run.status != dg.DagsterRunStatus.SUCCESS):
            plan.stale[pair] = "not exported since their last build"
        elif unfinished:
            plan.stale[pair] = f"built by a build whose {', '.join(unfinished)} run did not " \
                               "finish"
    fresh = [pair for pair in chosen if pair not in plan.stale]
    if fresh:
        for pair, reason in _changed_inputs(instance, fact_keys, fresh,
                                            {pair: built[pair] for pair in fresh},
                                            _models_cursor(instance, model_keys),
                                            others_stale=bool(plan.stale)).items():
            plan.stale[pair] = reason
    return plan


def _short(run) -> str:
    return run.dagster_run.run_id[:8]


def _covered(run: dg.DagsterRun) -> set[Pair] | None:
    """The partitions a run covered, from its partition tags (None: no partition tags)."""
    tags = run.tags
    if "dagster/partition" in tags:
        return {parts.split_key(tags["dagster/partition"])}
    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    if not start or not end:
        return None
    (first_state, first_month), (last_state, last_month) = parts.split_key(start), \
        parts.split_key(end)
    states = parts.STATES[parts.STATES.index(first_state): parts.STATES.index(last_state) + 1]
    covered, month = set(), first_month
    while month <= last_month:
        covered.update((state, month) for state in states)
        month = parts.add_months(month, 1)
    return covered


def _runs(instance: dg.DagsterInstance, job_name: str, page: int = 100) -> Iterator:
    """The job's run records, newest first, a page at a time."""
    cursor = None
    while True:
        records = instance.get_run_records(dg.RunsFilter(job_name=job_name), limit=page,
                                           cursor=cursor)
        yield from records
        if len(records) < page:
            return
        cursor = records[-1].dagster_run.run_id


def _newest_covering_runs(instance: dg.DagsterInstance, job_name: str, wanted: set[Pair]
                          ) -> dict[Pair, object]:
    """Per partition of ``wanted``, the newest run record of ``job_name`` that covered it (runs
    are read newest first, only until every partition has one)."""
    found: dict = {}
    for record in _runs(instance, job_name):
        covered = _covered(record.dagster_run)
        if not covered:
            continue
        for pair in (covered & wanted) - found.keys():
            found[pair] = record
        if len(found) == len(wanted):
            break
    return found


def _finished_after(instance: dg.DagsterInstance, job_name: str, after) -> bool:
    """The newest run of ``job_name`` succeeded, and started after the run record ``after``."""
    if after is None:
        return True  # nothing was built: nothing to have finished
    newest = next(_runs(instance, job_name, page=1), None)
    return (newest is not None and newest.dagster_run.status == dg.DagsterRunStatus.SUCCESS
            and newest.storage_id > after.storage_id)


def _changed_code_names(defs: dg.Definitions, instance: dg.DagsterInstance,
                        job_names: list[str]) -> str:
    """Which assets' latest materialization ran another code version than today's (for the
    message; the decision is the run's fingerprint)."""
    current = code_versions(defs, job_names)
    names = []
    for record in instance.get_asset_records(list(current)):
        event = record.asset_entry.last_materialization
        recorded = (event.tags or {}).get(CODE_VERSION_TAG) if event else None
        key = record.asset_entry.asset_key
        if recorded is not None and current[key] and recorded != current[key]:
            names.append(key.to_user_string())
    if not names:
        return "code versions, dbt macros or the outreach configuration changed"
    return "new code version of " + ", ".join(sorted(names)[:5]) + (
        f" and {len(names) - 5} more" if len(names) > 5 else "")


def _fact_keys(defs: dg.Definitions, build_job: str, partitioned: bool = True
               ) -> list[dg.AssetKey]:
    """The dbt models of ``build_job`` that are partitioned (each run records a
    materialization of every partition it covers, even one where dbt wrote no rows), or with
    ``partitioned=False`` those that are not (staging, intermediate, ``dim_person``)."""
    layer = defs.resolve_job_def(build_job).asset_layer
    return sorted((key for key in layer.selected_asset_keys
                   if (layer.get(key).partitions_def is not None) == partitioned
                   and "dbt" in (layer.get(key).kinds or set())), key=str)


def fact_keys_from_manifest(manifest: Path, partitioned: bool = True) -> list[dg.AssetKey]:
    """``_fact_keys`` from the dbt manifest alone: the models tagged ``partitioned`` (or not),
    keyed ``[schema, model]`` as ``warehouse.assets.BdtDbtTranslator`` keys them."""
    import json

    nodes = json.loads(Path(manifest).read_text())["nodes"].values()
    return sorted((dg.AssetKey([node["config"].get("schema") or node["schema"], node["name"]])
                   for node in nodes if node["resource_type"] == "model"
                   and ("partitioned" in (node.get("tags") or [])) == partitioned), key=str)


def _models_cursor(instance: dg.DagsterInstance, model_keys: list[dg.AssetKey]) -> int:
    """Where the unpartitioned models' newest build stands in the event log: the earliest of
    their latest materializations (0 when one was never built)."""
    if not model_keys:
        return 0
    records = {record.asset_entry.asset_key: record
               for record in instance.get_asset_records(list(model_keys))}
    cursors = []
    for key in model_keys:
        entry = records[key].asset_entry if key in records else None
        latest = entry.last_materialization_record if entry else None
        cursors.append(latest.storage_id if latest else 0)
    return min(cursors)


def _changed_inputs(instance: dg.DagsterInstance, fact_keys: list[dg.AssetKey],
                    fresh: list[Pair], built: dict[Pair, object], models_cursor: int = 0,
                    others_stale: bool = False) -> dict[Pair, str]:
    """Of the ``fresh`` partitions so far, those a raw partition with a new data version since
    their build reaches (``REACH``, ``WITHIN``), each with the first such input. A change only
    the unpartitioned models read, made after their newest build (``models_cursor``), makes
    the newest partition stale when nothing else is (``others_stale``: partitions not in
    ``fresh`` are): any build runs those models."""
    materialized = dg.DagsterEventType.ASSET_MATERIALIZATION
    keys = {pair: parts.partition_key(*pair) for pair in fresh}
    # Where each partition's build stands in the event log: its facts' materializations (the
    # earliest of them: a raw event before it was there when dbt read the raw tables).
    cursor: dict[Pair, int] = {}
    for fact in fact_keys:
        latest = instance.get_latest_storage_id_by_partition(fact, materialized)
        for pair, key in keys.items():
            cursor[pair] = min(cursor.get(pair, latest.get(key, 0)), latest.get(key, 0))
    # The partitions built by one run share one cursor: the earliest of theirs (a raw event
    # during that run counts as after it, so it is looked at).
    groups: dict[str, list[Pair]] = {}
    for pair in fresh:
        groups.setdefault(built[pair].dagster_run.run_id, []).append(pair)
    group_cursor = {run_id: min(cursor[pair] for pair in pairs) for run_id, pairs in groups.items()}
    stale: dict[Pair, str] = {}
    unpartitioned: str | None = None  # a change only the unpartitioned models read
    for feed, reach in REACH.items():
        key = dg.AssetKey(["raw", feed])
        latest = instance.get_latest_storage_id_by_partition(key, materialized)
        if not latest:
            continue
        current = None
        for run_id, pairs in groups.items():
            since = group_cursor[run_id]
            newer = sorted(partition for partition, storage_id in latest.items()
                           if storage_id > since)
            if not newer:
                continue
            if current is None:
                current = _data_versions(instance, key, None, None)
            before = _data_versions(instance, key, newer, since)
            for partition in newer:
                if before.get(partition) is not None and \
                        before.get(partition) == current.get(partition):
                    continue  # loaded again, same data version
                changed = parts.split_key(partition)
                what = ("new" if partition not in before else "changed")
                reaches = reach
                if feed in WITHIN and what == "changed" and \
                        _same_join_version(instance, key, partition, since):
                    reaches, what = WITHIN[feed], "changed (ids and joined columns as before)"
                    if reaches is _no_partition and unpartitioned is None and \
                            latest[partition] > models_cursor:
                        unpartitioned = (f"have a changed input since run {run_id[:8]} "
                                         f"(raw/{feed} {changed[0]} {changed[1]:%Y-%m}, read by "
                                         "the unpartitioned models, which any build runs)")
                for pair in pairs:
                    if pair not in stale and reaches(changed, pair):
                        stale[pair] = (f"have a {what} input since run {run_id[:8]} (raw/{feed} "
                                       f"{changed[0]} {changed[1]:%Y-%m}, and what it reaches)")
    if unpartitioned is not None and not stale and not others_stale:
        stale[max(fresh, key=lambda pair: (pair[1], pair[0]))] = unpartitioned
    return stale


def _same_join_version(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str,
                       before: int) -> bool:
    """Whether ``partition``'s latest materialization has the ``JOIN_VERSION_KEY`` its latest
    one before storage id ``before`` had (False when either has none)."""
    versions = []
    for records_filter in (dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition],
                                                 before_storage_id=before),
                           dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition])):
        records = instance.fetch_materializations(records_filter, limit=1).records
        materialization = records[0].asset_materialization if records else None
        entry = materialization.metadata.get(JOIN_VERSION_KEY) if materialization else None
        versions.append(getattr(entry, "value", None))
    return versions[0] is not None and versions[0] == versions[1]


def _data_versions(instance: dg.DagsterInstance, key: dg.AssetKey,
                   partitions: list[str] | None, before: int | None) -> dict[str, str | None]:
    """Per partition, the data version of its latest materialization (before storage id
    ``before``, when given); None for a materialization recorded without one."""
    tags = instance.event_log_storage.get_latest_tags_by_partition(
        key, dg.DagsterEventType.ASSET_MATERIALIZATION, [DATA_VERSION_TAG],
        asset_partitions=partitions, before_cursor=before)
    found: dict[str, str | None] = {partition: None for partition in (partitions or [])
                                    if partition in tags}
    for partition, values in tags.items():
        found[partition] = values.get(DATA_VERSION_TAG)
    return found
