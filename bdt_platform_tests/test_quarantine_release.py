"""``bdt quarantine list|release`` and ``Inbox.put``, from the operator's side (``cli.main``
in-process on a temporary home; a folder inbox, and a real SFTP server).

The story: a partner that is not registered yet sends a file; ``bdt ingest`` quarantines it
(``unknown_partner``); releasing it before the registry allows it refuses it again (exit 1, a new
reason); ``bdt partners add`` registers the partner; ``bdt quarantine release`` lands it (exit 0):
rows in ``raw.eligibility``, the file in the lake's archive with its original arrival time, the
quarantine copy gone. A file that breaks the data contract stays quarantined when released.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import time
from pathlib import Path

import duckdb
import pytest

from bdt_platform import cli
from bdt_platform.inbox import ingest as ingest_module
from bdt_platform.core.inbox_interface import InboxWriteRefused
from bdt_platform.inbox.folder import FolderInbox
from bdt_platform.inbox.ingest import FileResult, IngestResult
from bdt_platform.inbox.partners import DEFAULT_REGISTRY
from bdt_platform.inbox.quarantine import (QuarantineError, find_quarantined, list_quarantined,
                                           release)
from bdt_platform.inbox.sftp import SftpInbox
from bdt_platform.storage.lake import LakeResource

from .conftest import TEST_PII_KEY, cli_environment
from bdt_platform.synthetic.sftp_server import SftpTestServer

NAME = "newpartner_PA_202401_eligibility.csv"
INBOX_PATH = f"newpartner/{NAME}"
LAKE_PATH = f"quarantine/{INBOX_PATH}"
RECEIVED = dt.datetime(2024, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def eligibility_file(tmp_path_factory) -> bytes:
    """A contract-true eligibility file for PA 2024-01 from the synthetic generator (whichever
    partner it writes it as: only the bytes are used, under another partner's name)."""
    from bdt_platform.synthetic.generate import generate

    where = tmp_path_factory.mktemp("generated")
    generate(where / "inbox", where / "casemgmt.sqlite", states=["PA"],
             months=[dt.date(2024, 1, 1)], scale=0.1, seed=7, pii_key=TEST_PII_KEY)
    files = sorted((where / "inbox").glob("*/*_PA_202401_eligibility.csv"))
    assert files, "the generator wrote no PA 2024-01 eligibility file"
    return files[0].read_bytes()


def rows_in(data: bytes) -> int:
    return sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8-sig")))) - 1


def breaking_the_contract(data: bytes) -> bytes:
    """The same file with its first row's zip replaced by letters."""
    text = data.decode("utf-8")
    header, first, rest = text.split("\n", 2)
    column = next(csv.reader([header])).index("zip")
    cells = next(csv.reader([first]))
    cells[column] = "ABCDE"
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return "\n".join([header, out.getvalue(), rest]).encode("utf-8")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """``$BDT_HOME`` of its own, with BDT_PARTNERS naming a copy of the shipped registry."""
    home = tmp_path / "home"
    registry = tmp_path / "partners.yaml"
    registry.write_text(DEFAULT_REGISTRY.read_text())
    cli_environment(monkeypatch, home, registry)
    return home


def drop(home: Path, path: str, data: bytes, received: dt.datetime = RECEIVED) -> Path:
    target = home / "inbox" / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    os.utime(target, (received.timestamp(), received.timestamp()))
    return target


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def reason_of(home: Path, lake_path: str) -> dict:
    return json.loads((home / "lake" / f"{lake_path}.reason.json").read_text())


def warehouse_rows(home: Path, source_file: str) -> int:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("SELECT count(*) FROM raw.eligibility WHERE _source_file = ?",
                           [source_file]).fetchone()[0]


# -- the story, through the bdt command -----------------------------------------------------------

def test_a_file_of_an_unregistered_partner_loads_once_registered_and_released(
        home, capsys, eligibility_file):
    drop(home, INBOX_PATH, eligibility_file)
    code, out, _ = run(capsys, "ingest", "--settle", "0")
    assert code == 1
    assert f"quarantined {INBOX_PATH}: unknown partner 'newpartner'" in out
    first = reason_of(home, LAKE_PATH)
    assert [f["rule"] for f in first["failures"]] == ["unknown_partner"]
    assert not (home / "inbox" / INBOX_PATH).exists()

    code, out, _ = run(capsys, "quarantine", "list")
    assert code == 0
    header, row = out.splitlines()[1:3]
    assert header.split() == ["rejected", "partner", "feed", "rule", "file", "reason"]
    assert row.split()[2:6] == ["newpartner", "eligibility", "unknown_partner", LAKE_PATH]
    assert "unknown partner 'newpartner'" in row

    # Released while the registry still refuses it: quarantined again, with a new reason.
    time.sleep(0.01)
    code, out, _ = run(capsys, "quarantine", "release", NAME)
    assert code == 1
    assert f"still rejected: {LAKE_PATH} (new reason in lake/{LAKE_PATH}.reason.json):" in out
    again = reason_of(home, LAKE_PATH)
    assert again["rejected_at"] > first["rejected_at"]
    assert again["received_at"] == first["received_at"] == RECEIVED.isoformat()
    assert not (home / "inbox" / INBOX_PATH).exists()

    assert run(capsys, "partners", "add", "newpartner", "--feed", "eligibility",
               "--states", "PA")[0] == 0
    code, out, err = run(capsys, "quarantine", "release", LAKE_PATH)
    assert code == 0, out + err
    rows = rows_in(eligibility_file)
    assert f"loaded {LAKE_PATH}: {rows} rows into raw.eligibility" in out
    assert f"removed {LAKE_PATH} and {LAKE_PATH}.reason.json" in out
    assert warehouse_rows(home, NAME) == rows
    quarantine = home / "lake" / "quarantine" / "newpartner"
    assert sorted(p.name for p in quarantine.iterdir()) == []
    [archived] = (home / "lake" / "archive" / "eligibility" / "month=2024-01" / "state=PA").glob(
        f"*_{NAME}")
    assert archived.name.startswith("20240203T040506Z_")  # its arrival time, kept
    assert archived.read_bytes() == eligibility_file
    assert (home / "inbox" / "processed" / INBOX_PATH).read_bytes() == eligibility_file

    code, out, _ = run(capsys, "quarantine", "list")
    assert code == 0 and out.startswith("no quarantined files")
    code, _, err = run(capsys, "quarantine", "release", NAME)
    assert code == 2 and err.startswith(f"bdt quarantine release: no quarantined file '{NAME}'")


def test_a_file_that_still_breaks_the_contract_stays_quarantined(home, capsys,
                                                                  eligibility_file):
    name = "paagency_PA_202401_eligibility.csv"
    lake_path = f"quarantine/paagency/{name}"
    bad = breaking_the_contract(eligibility_file)
    drop(home, f"paagency/{name}", bad)
    code, out, _ = run(capsys, "ingest", "--settle", "0")
    assert code == 1 and f"quarantined {'paagency/' + name}" in out, out
    first = reason_of(home, lake_path)
    assert any(f["column"] == "zip" for f in first["failures"]), first

    time.sleep(0.01)
    code, out, _ = run(capsys, "quarantine", "release", lake_path)
    assert code == 1, out
    assert f"still rejected: {lake_path}" in out and "zip" in out
    again = reason_of(home, lake_path)
    assert again["rejected_at"] > first["rejected_at"]
    assert again["failures"] == first["failures"]
    assert (home / "lake" / lake_path).read_bytes() == bad
    assert [e.lake_path for e in list_quarantined(LakeResource(root=str(home / "lake")))] == [
        lake_path]
    assert not (home / "inbox" / "paagency" / name).exists()
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        tables = {r[0] for r in con.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables").fetchall()}
        if "raw.eligibility" in tables:
            assert con.execute("SELECT count(*) FROM raw.eligibility").fetchone()[0] == 0


# -- list and find, on a lake written directly ------------------------------------------------

def quarantine(lake: LakeResource, partner: str, name: str, data: bytes, rejected: str,
               **reason) -> str:
    return lake.quarantine(partner, name, data, {
        "file": name, "feed": "eligibility", "partner": partner,
        "received_at": "2024-02-01T00:00:00+00:00", "rejected_at": rejected,
        "failures": [{"rule": "zip_format", "column": "zip", "count": 3,
                      "message": "3 rows with a bad zip", "examples": []}], **reason})


def test_list_is_newest_first_and_reads_older_reasons(home, capsys):
    lake = LakeResource(root=str(home / "lake"))
    code, out, _ = run(capsys, "quarantine", "list")
    assert code == 0 and out.strip() == f"no quarantined files (in {home / 'lake' / 'quarantine'})"
    old = quarantine(lake, "paagency", "paagency_PA_202401_eligibility.csv", b"a",
                     "2024-03-01T10:00:00+00:00")  # no summary: an older reason file
    new = quarantine(lake, "communitycare", "communitycare_PA_202401_eligibility.csv", b"b",
                     "2024-03-02T10:00:00+00:00", summary="rejected: 3 rows break zip")
    same_name = quarantine(lake, "paagency", "paagency_PA_202401_eligibility.csv", b"c",
                           "2024-03-01T12:00:00+00:00")
    assert same_name.startswith("quarantine/paagency/paagency_PA_202401_eligibility.")
    entries = list_quarantined(lake)
    assert [e.lake_path for e in entries] == [new, same_name, old]
    assert entries[2].summary == "3 rows with a bad zip" and entries[2].rules == ("zip_format",)
    assert entries[1].inbox_path == "paagency/paagency_PA_202401_eligibility.csv"

    code, out, _ = run(capsys, "quarantine", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("3 quarantined file(s) in ")
    assert [line.split()[5] for line in lines[2:5]] == [new, same_name, old]
    assert lines[2].split()[:2] == ["2024-03-02", "10:00:00Z"]
    assert lines[2].endswith("rejected: 3 rows break zip")

    # Named by lake path (as list and ingest print it) or by a name only one file has.
    assert find_quarantined(lake, new).lake_path == new
    assert find_quarantined(lake, "lake/" + old).lake_path == old
    assert find_quarantined(lake, "communitycare_PA_202401_eligibility.csv").lake_path == new
    with pytest.raises(QuarantineError, match="names 2 quarantined files"):
        find_quarantined(lake, "paagency_PA_202401_eligibility.csv")
    code, out, err = run(capsys, "quarantine", "release", "paagency_PA_202401_eligibility.csv")
    assert code == 2 and out == ""
    assert err.startswith("bdt quarantine release: 'paagency_PA_202401_eligibility.csv' names "
                          f"2 quarantined files ({same_name}, {old}); give its lake path")
    assert run(capsys, "quarantine", "release", "quarantine/paagency/nope.csv")[0] == 2
    assert not (home / "inbox").exists() or not any((home / "inbox").rglob("*.csv"))


def test_release_refuses_a_different_file_waiting_in_the_inbox(home, capsys):
    lake = LakeResource(root=str(home / "lake"))
    quarantine(lake, "newpartner", NAME, b"quarantined bytes", "2024-03-01T10:00:00+00:00")
    waiting = drop(home, INBOX_PATH, b"a newer delivery")
    code, _, err = run(capsys, "quarantine", "release", NAME)
    assert code == 2
    assert f"the inbox already holds a different {INBOX_PATH}" in err
    assert waiting.read_bytes() == b"a newer delivery"
    assert (home / "lake" / LAKE_PATH).read_bytes() == b"quarantined bytes"


def test_release_refuses_a_copy_that_does_not_match_its_checksum(home, capsys):
    lake = LakeResource(root=str(home / "lake"))
    quarantine(lake, "newpartner", NAME, b"bytes", "2024-03-01T10:00:00+00:00",
               sha256="0" * 64)
    code, _, err = run(capsys, "quarantine", "release", LAKE_PATH)
    assert code == 2 and "does not match the checksum in its reason file" in err
    assert not (home / "inbox" / INBOX_PATH).exists()


def test_a_release_whose_run_fails_takes_the_file_back_out_of_the_inbox(tmp_path, monkeypatch):
    lake = LakeResource(root=str(tmp_path / "lake"))
    inbox = FolderInbox(root=str(tmp_path / "inbox"))
    quarantine(lake, "newpartner", NAME, b"bytes", "2024-03-01T10:00:00+00:00")
    seen = {}

    def failing_ingest(defs, instance, inbox_, lake_, warehouse, casemgmt, **kwargs):
        [file] = inbox_.list_files()
        seen.update(path=file.path, mtime=file.mtime, kwargs=kwargs)
        result = IngestResult()
        result.files.append(FileResult(file.path, "failed", "warehouse busy", "2024-01-01|PA"))
        return result

    monkeypatch.setattr(ingest_module, "ingest", failing_ingest)
    result = release(None, None, inbox, lake, None, NAME, echo=lambda line: None)
    assert (result.status, result.exit_code) == ("failed", 1)
    assert "warehouse busy" in result.detail
    assert seen["path"] == INBOX_PATH and seen["mtime"] == dt.datetime(
        2024, 2, 1, tzinfo=dt.timezone.utc).timestamp()
    assert seen["kwargs"]["settle_seconds"] == 0 and seen["kwargs"]["only_paths"] == {INBOX_PATH}
    assert inbox.list_files() == []
    assert (tmp_path / "lake" / LAKE_PATH).read_bytes() == b"bytes"


# -- Inbox.put ------------------------------------------------------------------------------------

def test_folder_put_writes_a_complete_file_with_its_arrival_time(tmp_path):
    inbox = FolderInbox(root=str(tmp_path / "inbox"))
    inbox.put(INBOX_PATH, b"first", RECEIVED.timestamp())
    [file] = inbox.list_files()
    assert (file.path, file.size, file.mtime) == (INBOX_PATH, 5, RECEIVED.timestamp())
    assert inbox.read_bytes(INBOX_PATH) == b"first"
    inbox.put(INBOX_PATH, b"second", RECEIVED.timestamp() + 60)  # replaces
    assert inbox.read_bytes(INBOX_PATH) == b"second"
    assert os.listdir(tmp_path / "inbox" / "newpartner") == [NAME]  # no temporary file left
    for bad in ("x.csv", "/abs/x.csv", "a/../x.csv", "a/b/x.csv", "processed/x.csv",
                "a/.hidden.csv", "a/x.csv.done"):
        with pytest.raises(ValueError, match="not a partner drop path"):
            inbox.put(bad, b"x", 0)
    inbox.remove(INBOX_PATH)
    inbox.remove(INBOX_PATH)  # gone already: fine
    assert inbox.list_files() == []


def test_folder_put_refused_is_one_line(tmp_path):
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "newpartner").write_text("a file where the folder should be")
    inbox = FolderInbox(root=str(tmp_path / "inbox"))
    with pytest.raises(InboxWriteRefused, match=f"could not put {INBOX_PATH} into the inbox "):
        inbox.put(INBOX_PATH, b"x", 0)


def sftp_inbox(server: SftpTestServer) -> SftpInbox:
    return server.inbox()


def test_sftp_put_uploads_under_a_hidden_name_and_renames_it_into_place(server):
    inbox = sftp_inbox(server)
    try:
        inbox.put(INBOX_PATH, b"over sftp", RECEIVED.timestamp())
        [file] = inbox.list_files()
        assert (file.path, file.size, int(file.mtime)) == (INBOX_PATH, 9,
                                                           int(RECEIVED.timestamp()))
        local = server.local(f"/inbox/{INBOX_PATH}")
        assert local.read_bytes() == b"over sftp"
        assert int(local.stat().st_mtime) == int(RECEIVED.timestamp())
        writes = [op for op in server.operations if op[0] != "mkdir"]
        [(_, temporary)] = [op for op in writes if op[0] == "open_write"]
        assert temporary.startswith(f"/inbox/newpartner/.{NAME}.") and temporary.endswith(".part")
        assert [op[0] for op in writes] == ["open_write", "setstat", "posix_rename"]
        assert writes[-1][1:] == (temporary, f"/inbox/{INBOX_PATH}")
        assert sorted(os.listdir(server.local("/inbox/newpartner"))) == [NAME]

        server.read_only = True
        with pytest.raises(InboxWriteRefused, match=r"^could not put newpartner/other\.csv "
                                                    r"into sftp://.*/inbox: .*read-only server"):
            inbox.put("newpartner/other.csv", b"x", 0)
        server.read_only = False
        assert sorted(os.listdir(server.local("/inbox/newpartner"))) == [NAME]
        inbox.remove(INBOX_PATH)
        assert inbox.list_files() == []
    finally:
        inbox.close()


def test_release_over_sftp(server, home, capsys, monkeypatch, eligibility_file):
    for name, value in server.environ("/inbox").items():
        monkeypatch.setenv(name, value)
    server.drop(f"/inbox/{INBOX_PATH}", eligibility_file, mtime=RECEIVED.timestamp())
    code, out, _ = run(capsys, "ingest", "--settle", "0")
    assert code == 1 and f"quarantined {INBOX_PATH}: unknown partner" in out
    assert not server.local(f"/inbox/{INBOX_PATH}").exists()

    assert run(capsys, "partners", "add", "newpartner", "--feed", "eligibility")[0] == 0
    server.operations.clear()
    code, out, err = run(capsys, "quarantine", "release", LAKE_PATH)
    assert code == 0, out + err
    assert warehouse_rows(home, NAME) == rows_in(eligibility_file)
    assert not (home / "lake" / LAKE_PATH).exists()
    assert server.local(f"/inbox/processed/{INBOX_PATH}").read_bytes() == eligibility_file
    assert any(op[0] == "posix_rename" and op[2] == f"/inbox/{INBOX_PATH}"
               for op in server.operations)
