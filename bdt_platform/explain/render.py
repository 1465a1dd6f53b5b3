"""An explanation as Markdown: printed by ``bdt explain`` and recorded in the Dagster UI."""

from __future__ import annotations

import datetime as dt

from bdt_platform.explain.engine import MAX_LISTED, Explanation, MetricChange, UpstreamChange


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.4f}".rstrip("0").rstrip(".")


def _metric_line(change: MetricChange) -> str:
    text = f"| {change.name} | {_number(change.before)} | {_number(change.after)} |"
    if not change.changed:
        return text + " unchanged |"
    if change.delta is None:
        return text + " | |"
    relative = f" ({change.relative:+.1%})" if change.relative is not None else ""
    return text + f" {'+' if change.delta >= 0 else ''}{_number(change.delta)}{relative} |"


def _upstream_lines(change: UpstreamChange) -> list[str]:
    lines = [f"- **{change.key.to_user_string()}** re-materialized "
             f"({_when(change.after.timestamp)}, run {change.after.run_id[:8]})"]
    if change.rows_before is not None or change.rows_after is not None:
        delta = ""
        if change.rows_before is not None and change.rows_after is not None:
            delta = f" ({change.rows_after - change.rows_before:+,})"
        lines.append(f"  - rows: {_number(change.rows_before)} -> {_number(change.rows_after)}{delta}")
    for partner, before, after in change.file_changes:
        lines.append(f"  - partner {partner}:")
        if before:
            lines.append(f"    - file before: `{before['file']}` sha256 {before['sha256'][:12]}, "
                         f"{before['size_bytes']:,} bytes, received {before['received_at']}")
        else:
            lines.append(f"    - file before: none ({partner} had no file for this partition yet)")
        if after:
            lines.append(f"    - file after: `{after['file']}` sha256 {after['sha256'][:12]}, "
                         f"{after['size_bytes']:,} bytes, received {after['received_at']}")
        else:
            lines.append(f"    - file after: none ({partner}'s rows are no longer loaded)")
    unchanged = [s for p, s in change.after.sources.items()
                 if p not in {c[0] for c in change.file_changes}]
    if unchanged:
        names = ", ".join(f"`{s['file']}` ({s['partner']})" for s in unchanged)
        lines.append(f"  - same source file{'s' if len(unchanged) > 1 else ''} {names} "
                     "(re-loaded, unchanged)")
    if change.code_changed:
        lines.append(f"  - code version: {change.before.code_version[:12]} -> "
                     f"{change.after.code_version[:12]}")
    return lines


def to_markdown(explanation: Explanation) -> str:
    e = explanation
    out = [f"## Why {e.table} {e.partition} changed",
           "",
           f"Comparing the materialization of {_when(e.before.timestamp)} (run {e.before.run_id[:8]}) "
           f"with {_when(e.after.timestamp)} (run {e.after.run_id[:8]}).",
           "",
           "### Metrics",
           "",
           "| metric | before | after | change |",
           "|---|---|---|---|"]
    out += [_metric_line(change) for change in e.metrics]
    out += ["", "### Upstream changes in between", ""]
    relevant = [u for u in e.upstream if u.source_changed or u.code_changed
                or (u.rows_before != u.rows_after)]
    quiet = [u for u in e.upstream if u not in relevant]
    if not relevant:
        out.append("- no upstream input or code version changed")
    for change in relevant:
        out += _upstream_lines(change)
    if quiet:
        out.append(f"- re-materialized with no change of rows, source or code: "
                   f"{', '.join(u.key.to_user_string() for u in quiet)}")
    for item in e.rejected_files:
        out.append(f"- **{item['file']}** was rejected by the {item['asset']} contract and "
                   f"quarantined (`{item.get('quarantined_to', '')}`): {item['reason']}. "
                   "The partition kept its previous rows.")
    out += ["", "### Records behind the changes", ""]
    if not e.rows:
        out.append("- no counted record changed")
    for rows in e.rows:
        if rows.note:
            out.append(f"**{rows.metric}**: {rows.note}")
            continue
        sign = "+" if rows.total >= 0 else ""
        out.append(f"**{rows.metric}** changed by {sign}{_number(rows.total)}:")
        for cause in rows.causes:
            out.append(f"- {cause.label}: {len(cause.entered)} entered, {len(cause.left)} left, "
                       f"net {'+' if cause.amount >= 0 else ''}{_number(cause.amount)}")
            if cause.entered:
                out.append(f"  - entered: {', '.join(cause.entered[:MAX_LISTED])}"
                           + (" ..." if len(cause.entered) > MAX_LISTED else ""))
            if cause.left:
                out.append(f"  - left: {', '.join(cause.left[:MAX_LISTED])}"
                           + (" ..." if len(cause.left) > MAX_LISTED else ""))
        out.append("")
    return "\n".join(out).rstrip() + "\n"
