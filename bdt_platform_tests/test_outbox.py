"""The outbox: files published whole (temporary name, then rename), locally and on a real SFTP
server; the monthly mail list asset end to end; and the sensor benchmark's smoke run."""

import csv
import datetime as dt
import hashlib
import io
import subprocess
import sys

import asyncssh
import dagster as dg
import pytest

from bdt_platform.inbox.ingest import ingest
from bdt_platform.outbox.base import FolderOutbox, OutboxUnavailable
from bdt_platform.outbox.mail_list import COLUMNS, KEY, mail_list, mail_list_filename
from bdt_platform.outreach.mail_list import TABLE as LIST_TABLE
from bdt_platform.outbox.sftp import SftpOutbox
from bdt_platform.synthetic import generate
from bdt_platform.warehouse.build import BUILD_JOB

from .conftest import make_settings
from bdt_platform.synthetic.sftp_server import SftpTestServer, openssh_sftp, start_server

JAN = dt.date(2024, 1, 1)
PAYLOAD = b"mail_piece_id,person_token\n" + b"MP-PA-202401-0000000001,tok_0\n" * 2000


def outbox_for(server: SftpTestServer, known_hosts=None) -> SftpOutbox:
    return SftpOutbox(host="127.0.0.1", port=server.port, username=server.username,
                      root="/outbox", key_file=str(server.client_key_file),
                      known_hosts_file=str(known_hosts or server.known_hosts_file))


def test_folder_outbox_publishes_whole_files(tmp_path):
    outbox = FolderOutbox(root=str(tmp_path / "outbox"))
    receipt = outbox.publish("mailvendor", "list.csv", PAYLOAD)
    assert (tmp_path / "outbox/mailvendor/list.csv").read_bytes() == PAYLOAD
    assert receipt.sha256 == hashlib.sha256(PAYLOAD).hexdigest() and receipt.size == len(PAYLOAD)
    outbox.publish("mailvendor", "list.csv", b"replaced\n")
    assert outbox.read_bytes("mailvendor", "list.csv") == b"replaced\n"
    assert sorted(p.name for p in (tmp_path / "outbox/mailvendor").iterdir()) == ["list.csv"]
    assert outbox.list_files("mailvendor") == ["list.csv"] and outbox.list_files("nobody") == []
    with pytest.raises(ValueError, match="unsafe"):
        outbox.publish("../etc", "list.csv", b"x")


def test_sftp_upload_lands_complete_under_its_final_name(server, tmp_path):
    outbox = outbox_for(server)
    receipt = outbox.publish("mailvendor", "mailvendor_PA_202401_maillist.csv", PAYLOAD)
    final = "/outbox/mailvendor/mailvendor_PA_202401_maillist.csv"
    temporary = "/outbox/mailvendor/.mailvendor_PA_202401_maillist.csv.part"
    assert receipt.location == f"sftp://bdt@127.0.0.1:{server.port}{final}"
    assert receipt.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    # The server saw the bytes written under the hidden name only, then one atomic rename.
    writes = [op for op in server.operations if op[0] in ("open_write", "posix_rename", "rename")]
    assert writes == [("open_write", temporary), ("posix_rename", temporary, final)]
    assert server.local(final).read_bytes() == PAYLOAD
    assert sorted(p.name for p in server.local("/outbox/mailvendor").iterdir()) == [
        "mailvendor_PA_202401_maillist.csv"]
    assert outbox.list_files("mailvendor") == ["mailvendor_PA_202401_maillist.csv"]
    # Interop: the vendor's OpenSSH client fetches exactly what we published.
    fetched = tmp_path / "fetched.csv"
    result = openssh_sftp(server, [f"get {final} {fetched}"])
    assert result.returncode == 0, result.stderr
    assert fetched.read_bytes() == PAYLOAD
    # Re-publishing replaces the file atomically.
    outbox.publish("mailvendor", "mailvendor_PA_202401_maillist.csv", b"v2\n")
    assert server.local(final).read_bytes() == b"v2\n"
    outbox.close()


def test_sftp_outbox_refusals_are_one_line_and_leave_nothing_half_written(server, tmp_path):
    server.read_only = True
    with pytest.raises(OutboxUnavailable, match="could not publish /outbox/mailvendor/x.csv"):
        outbox_for(server).publish("mailvendor", "x.csv", PAYLOAD)
    assert not server.local("/outbox/mailvendor").exists()
    server.read_only = False
    other = tmp_path / "known_hosts_other"
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()
    other.write_text(f"[127.0.0.1]:{server.port} {impostor}")
    with pytest.raises(OutboxUnavailable, match="does not match") as refused:
        outbox_for(server, known_hosts=other).publish("mailvendor", "x.csv", PAYLOAD)
    assert "\n" not in str(refused.value)
    server.stop()
    with pytest.raises(OutboxUnavailable, match="cannot reach"):
        outbox_for(server).publish("mailvendor", "x.csv", PAYLOAD)


def test_mail_list_asset_pushes_the_state_month_list_to_sftp(tmp_path, monkeypatch):
    """Partner files arrive over SFTP, land, dbt builds the people, the mail list goes back out
    to /outbox/mailvendor/ on the same server; a server that refuses connections for a while
    makes the step retry, and the retry publishes the list."""
    from bdt_platform.definitions import build_definitions
    from bdt_platform.core.runs import instance_for

    server = start_server(tmp_path / "sftp")
    try:
        settings = make_settings(tmp_path / "home", **server.environ("/inbox"))
        generate(tmp_path / "drops", settings.casemgmt_sqlite_path, states=["PA"], months=[JAN],
                 scale=0.1, seed=3, pii_key=settings.pii_key)
        for path in sorted((tmp_path / "drops").rglob("*.csv*")):
            server.drop(f"/inbox/{path.parent.name}/{path.name}", path.read_bytes(),
                        mtime=path.stat().st_mtime - 3600)
        defs = build_definitions(settings)
        instance = instance_for(settings)
        resources = defs.resources
        landed = ingest(defs, instance, resources["inbox"], resources["lake"],
                        resources["warehouse"], resources["casemgmt"], settle_seconds=0,
                        echo=lambda line: None)
        assert landed.exit_code == 0 and len([f for f in landed.files
                                              if f.status == "loaded"]) == 5
        assert not [p for p in server.local("/inbox").glob("*/*") if p.is_file()
                    and p.parent.name != "processed"]  # `bdt ingest` over SFTP moved them all
        assert len(list(server.local("/inbox/processed").rglob("*.csv*"))) == 5
        # The warehouse for the partition: dbt's models, the report and the outreach tables.
        built = defs.resolve_job_def(BUILD_JOB).execute_in_process(
            instance=instance, raise_on_error=False, partition_key="2024-01-01|PA")
        assert built.success

        def publish() -> dg.ExecuteInProcessResult:
            # A run of its own, as `export_reports` (the list table logs its partitions'
            # materializations without an output, so it skips its dependants in its run).
            return dg.materialize([mail_list], partition_key="2024-01-01|PA", instance=instance,
                                  resources={key: resources[key] for key in
                                             ("warehouse", "outbox", "partners", "lake")})

        # The server is down when the step starts and back once the step has met the refused
        # connection (when core/retries.py computes the retry's wait, cut to 2 s here; not
        # after a fixed delay, which a busy machine can outlast before the step even starts):
        # the refused connection is retried and the list lands.
        from bdt_platform.core import retries

        waits = []

        def server_back_then_wait(attempt: int) -> float:
            waits.append(attempt)
            if len(waits) == 1:
                server.start()
            return 2.0

        monkeypatch.setattr(retries, "wait_seconds", server_back_then_wait)
        resources["outbox"].close()  # no connection kept from before
        server.stop()
        try:
            first = publish()
        finally:
            if not waits:
                server.start()  # the step never met the refusal: the assertions say so
        assert first.success and waits == [1]
        [retry] = [e for e in first.all_events
                   if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
        assert retry.event_specific_data.error.cause.cls_name == "OutboxUnavailable"
        remote = server.local(f"/outbox/mailvendor/{mail_list_filename('mailvendor', 'PA', JAN)}")
        data = remote.read_bytes()
        rows = list(csv.DictReader(io.StringIO(data.decode())))
        assert list(rows[0]) == COLUMNS
        eligibility = [row for path in sorted((tmp_path / "drops").glob("*/*_eligibility.csv"))
                       for row in csv.DictReader(io.StringIO(path.read_text()))]
        assert len({path.parent.name for path in (tmp_path / "drops").glob("*/*_eligibility.csv")}) == 2
        people = resources["warehouse"].query(
            "SELECT count(DISTINCT person_token) AS n FROM raw.eligibility "
            "WHERE state = 'PA' AND month = DATE '2024-01-01'")["n"].iloc[0]
        listed = resources["warehouse"].query(
            f"SELECT mail_piece_id, person_token FROM {LIST_TABLE} "
            "WHERE state = 'PA' AND month = DATE '2024-01-01' ORDER BY rank")
        # The file is the outreach rules' list (not everyone eligible), one row per piece.
        assert 0 < len(rows) == len(listed) <= people
        assert [r["mail_piece_id"] for r in rows] == list(listed["mail_piece_id"])
        assert {(r["first_name"], r["last_name"]) for r in rows} <= {
            (r["first_name"], r["last_name"]) for r in eligibility}
        ids = [r["mail_piece_id"] for r in rows]
        assert len(set(ids)) == len(ids) and all(i.startswith("MP-PA-202401-") for i in ids)
        assert len({r["person_token"] for r in rows}) == len(rows)
        assert all(r["person_token"].startswith("tok_") and r["state"] == "PA" for r in rows)
        assert sorted(p.name for p in remote.parent.iterdir()) == [remote.name]

        [event] = [e for e in first.get_asset_materialization_events()
                   if e.materialization.partition == "2024-01-01|PA"
                   and e.materialization.asset_key == KEY]
        metadata = event.materialization.metadata
        assert metadata["dagster/row_count"].value == len(rows)
        assert metadata["push"].value == "sent"
        assert metadata["outbox_sha256"].value == hashlib.sha256(data).hexdigest()
        assert metadata["outbox_location"].value.endswith(remote.name)
        # The attempt the server refused failed the check; the retry passed it.
        checks = [c for c in first.get_asset_check_evaluations() if c.asset_key == KEY]
        assert [c.passed for c in checks] == [False, True]

        again = publish()
        assert again.success
        [event] = [e for e in again.get_asset_materialization_events()
                   if e.materialization.asset_key == KEY]
        assert event.materialization.metadata["push"].value == "already_sent"  # sent once
        assert remote.read_bytes() == data  # deterministic: same people, same ids, same bytes
        assert sorted(p.name for p in remote.parent.iterdir()) == [remote.name]
        instance.dispose()
    finally:
        server.close()


def test_benchmark_smoke():
    result = subprocess.run([sys.executable, "-m", "bdt_platform.bench.sensor_tick", "--files",
                             "200"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert any(line.startswith("sftp ") and "first tick" in line for line in lines)
    assert any(line.startswith("folder ") and "first tick" in line for line in lines)
    figures = __import__("json").loads(lines[-1])
    for backend in ("folder", "sftp"):
        tick = figures[backend]["first_tick"]
        assert tick["files"] == 200 and tick["total_s"] > 0 and tick["files_per_s"] > 0


def test_the_mail_list_goes_to_the_vendor_the_registry_has_returning_the_states_mail():
    """No partner name in the code: the mail vendor of a state is the partner registered to
    send its mail returns; none, or two, is a failure that says what to register."""
    from bdt_platform.inbox.partners import default_registry, parse_registry
    from bdt_platform.outbox.mail_list import mail_vendor

    assert mail_vendor(default_registry(), "PA") == "mailvendor"
    two = parse_registry("partners:\n- {name: printco, feeds: [mailreturns], states: [PA]}\n"
                         "- {name: letterhub, feeds: [mailreturns], states: all}\n", "test.yaml")
    assert mail_vendor(two, "NJ") == "letterhub"
    with pytest.raises(dg.Failure, match=r"PA: 2 partners \(printco, letterhub\) are registered"):
        mail_vendor(two, "PA")
    none = parse_registry("partners:\n- {name: paagency, feeds: [eligibility], states: [PA]}\n",
                          "test.yaml")
    with pytest.raises(dg.Failure, match="no partner is registered to send mailreturns for PA"
                                         r".*bdt partners add NAME --feed mailreturns --states PA"):
        mail_vendor(none, "PA")
