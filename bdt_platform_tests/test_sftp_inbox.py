"""The SFTP inbox against a real SFTP server on 127.0.0.1 (asyncssh, key auth, known_hosts).

Listing must mirror the local folder inbox exactly; landed files move to ``processed/``; a
read-only server leaves them in place; every outage or trust failure is one line of
``InboxUnavailable`` (and exit 2 from ``bdt ingest``); OpenSSH's own client interoperates.
"""

import os
import time
from pathlib import Path

import asyncssh
import pytest

from bdt_platform.core.inbox_interface import InboxUnavailable
from bdt_platform.inbox.folder import FolderInbox
from bdt_platform.inbox.sftp import SftpInbox, SftpUrl, parse_sftp_url
from bdt_platform.outbox.base import FolderOutbox
from bdt_platform.outbox.sftp import SftpOutbox
from bdt_platform.core.resources import build_inbox, build_outbox
from bdt_platform.core.settings import SettingsError

from .conftest import TEST_PII_KEY, make_settings
from bdt_platform.synthetic.sftp_server import SftpTestServer, openssh_sftp, server_process


def inbox_for(server: SftpTestServer) -> SftpInbox:
    return server.inbox()


def write(path: Path, data: bytes = b"x", mtime: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


@pytest.mark.parametrize("url, expected", [
    ("sftp://bdt@sftp.example.org:2222/inbox", SftpUrl("bdt", "sftp.example.org", 2222, "/inbox")),
    ("sftp://bdt@10.0.0.5/data/inbox/", SftpUrl("bdt", "10.0.0.5", 22, "/data/inbox")),
    ("sftp://b%40dt@host:22/in%20box", SftpUrl("b@dt", "host", 22, "/in box")),
])
def test_parse_sftp_url(url, expected):
    assert parse_sftp_url(url) == expected


@pytest.mark.parametrize("url, message", [
    ("ftp://bdt@host/inbox", "not an sftp"),
    ("sftp://host:22/inbox", "names no user"),
    ("sftp://bdt:secret@host/inbox", "password"),
    ("sftp://bdt@host:99999/inbox", "invalid port"),
    ("sftp://bdt@host:22", "names no folder"),
])
def test_parse_sftp_url_rejects(url, message):
    with pytest.raises(ValueError, match=message):
        parse_sftp_url(url)


def test_settings_select_sftp_inbox_and_outbox(tmp_path):
    url = "sftp://bdt@127.0.0.1:2222/srv/inbox"
    with pytest.raises(SettingsError, match="^BDT_SFTP_KEY"):
        build_inbox(make_settings(tmp_path, BDT_INBOX=url))
    with pytest.raises(SettingsError, match="^BDT_SFTP_KNOWN_HOSTS"):
        build_inbox(make_settings(tmp_path, BDT_INBOX=url, BDT_SFTP_KEY="/k"))
    with pytest.raises(SettingsError, match="^BDT_INBOX: .*names no user"):
        build_inbox(make_settings(tmp_path, BDT_INBOX="sftp://127.0.0.1/inbox",
                                  BDT_SFTP_KEY="/k", BDT_SFTP_KNOWN_HOSTS="/kh"))
    settings = make_settings(tmp_path, BDT_INBOX=url, BDT_SFTP_KEY="/k",
                             BDT_SFTP_KNOWN_HOSTS="/kh")
    inbox, outbox = build_inbox(settings), build_outbox(settings)
    assert isinstance(inbox, SftpInbox) and isinstance(outbox, SftpOutbox)
    assert (inbox.host, inbox.port, inbox.username, inbox.root) == ("127.0.0.1", 2222, "bdt",
                                                                     "/srv/inbox")
    assert (outbox.root, outbox.key_file, outbox.known_hosts_file) == ("/srv/outbox", "/k", "/kh")
    local = make_settings(tmp_path)
    assert isinstance(build_inbox(local), FolderInbox)
    assert build_outbox(local) == FolderOutbox(root=str(tmp_path / "outbox"))


def test_listing_mirrors_the_folder_inbox(server):
    root = server.root / "inbox"
    old = time.time() - 3600
    write(root / "communitycare/communitycare_PA_202401_eligibility.csv", b"a,b\n1,2\n", old)
    write(root / "communitycare/communitycare_PA_202402_eligibility.csv", b"a\n")
    write(root / "communitycare/communitycare_PA_202402_eligibility.csv.done", b"")
    write(root / "communitycare/orphan.csv.done", b"")
    write(root / "communitycare/.partial_upload.csv", b"x")
    write(root / "communitycare/nested/deeper.csv", b"x")
    write(root / "statehhs/statehhs_NJ_202401_outcomes.csv.gz", b"\x1f\x8b" + b"0" * 100)
    write(root / "unknown partner/odd name!.csv", b"x")
    write(root / "processed/communitycare/communitycare_PA_202312_eligibility.csv", b"x")
    write(root / ".hidden/x.csv", b"x")
    write(root / "stray-file-at-root.csv", b"x")
    (root / "emptypartner").mkdir()

    def normalized(files):
        return [(f.folder, f.name, f.size, int(f.mtime), f.has_done_marker) for f in files]

    over_sftp = inbox_for(server).list_files()
    assert normalized(over_sftp) == normalized(FolderInbox(root=str(root)).list_files())
    assert [f.path for f in over_sftp] == [
        "communitycare/communitycare_PA_202401_eligibility.csv",
        "communitycare/communitycare_PA_202402_eligibility.csv",
        "statehhs/statehhs_NJ_202401_outcomes.csv.gz",
        "unknown partner/odd name!.csv",
    ]
    assert over_sftp[1].has_done_marker and not over_sftp[0].has_done_marker
    assert int(over_sftp[0].mtime) == int(old) and over_sftp[0].size == 8


def test_a_server_in_a_process_of_its_own_serves_its_folder_until_the_block_ends(tmp_path):
    """The benchmark's server (``server_process``): the same server in a child process,
    reached over TCP with its keys and known_hosts; it is gone after the block."""
    old = time.time() - 3600
    write(tmp_path / "root/inbox/statehhs/statehhs_NJ_202401_outcomes.csv", b"a\n1\n", old)
    with server_process(tmp_path) as served:
        inbox = SftpInbox.from_url(served.url("/inbox"), str(served.client_key_file),
                                   str(served.known_hosts_file))
        try:
            listed = inbox.list_files()
            assert [(f.path, f.size, int(f.mtime)) for f in listed] == [
                ("statehhs/statehhs_NJ_202401_outcomes.csv", 4, int(old))]
            assert inbox.read_bytes(listed[0].path) == b"a\n1\n"
        finally:
            inbox.close()
    gone = SftpInbox.from_url(served.url("/inbox"), str(served.client_key_file),
                              str(served.known_hosts_file))
    with pytest.raises(InboxUnavailable):
        gone.list_files()
    gone.close()


def test_a_folder_longer_than_many_directory_reads_is_listed_whole_every_time(server):
    """A partner folder is listed with pipelined directory reads (the server answers a batch of
    names per read): every file once, sizes right, and the session stays usable after."""
    root = server.root / "inbox" / "mailvendor"
    old = time.time() - 3600
    names = [f"mailvendor_PA_{2000 + n // 12:04d}{n % 12 + 1:02d}_mail_returns.csv"
             for n in range(700)]
    for number, name in enumerate(names):
        write(root / name, b"x" * (number % 50 + 1), old)
    inbox = inbox_for(server)
    try:
        for _ in range(3):
            listed = inbox.list_files()
            assert [f.name for f in listed] == sorted(names)
            assert {f.name: f.size for f in listed} == {
                name: number % 50 + 1 for number, name in enumerate(names)}
        assert inbox.read_bytes(f"mailvendor/{names[7]}") == b"x" * 8
    finally:
        inbox.close()


def test_missing_root_lists_nothing(server):
    inbox = SftpInbox.from_url(server.url("/no/such/inbox"), str(server.client_key_file),
                               str(server.known_hosts_file))
    assert inbox.list_files() == []


def test_read_and_mark_processed_moves_file_and_marker(server):
    root = server.root / "inbox"
    name = "communitycare/communitycare_PA_202401_eligibility.csv"
    write(root / name, b"first delivery\n")
    write(root / (name + ".done"), b"")
    inbox = inbox_for(server)
    assert inbox.read_bytes(name) == b"first delivery\n"
    inbox.mark_processed(name)
    assert not (root / name).exists() and not (root / (name + ".done")).exists()
    assert (root / "processed" / name).read_bytes() == b"first delivery\n"
    assert inbox.list_files() == []
    # A re-send of the same name lands later; the processed copy is replaced, never duplicated.
    write(root / name, b"second delivery\n")
    inbox.mark_processed(name)
    assert (root / "processed" / name).read_bytes() == b"second delivery\n"
    renames = [op for op in server.operations if op[0] == "posix_rename"]
    assert renames[-1] == ("posix_rename", f"/inbox/{name}", f"/inbox/processed/{name}")
    with pytest.raises(ValueError):
        inbox.read_bytes("../outbox/secret.csv")


def test_read_only_server_leaves_files_in_place(server):
    root = server.root / "inbox"
    name = "statehhs/statehhs_PA_202401_outcomes.csv"
    write(root / name, b"data\n")
    write(root / (name + ".done"), b"")
    server.read_only = True
    inbox = inbox_for(server)
    inbox.mark_processed(name)  # refused by the server: logged, not raised
    assert (root / name).read_bytes() == b"data\n" and (root / (name + ".done")).exists()
    assert not (root / "processed").exists()
    assert [f.path for f in inbox.list_files()] == [name]


def test_unknown_host_key_is_refused_and_never_added(server, tmp_path):
    write(server.root / "inbox/communitycare/x.csv")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(InboxUnavailable, match="not in .*refusing to connect") as refused:
        SftpInbox.from_url(server.url(), str(server.client_key_file), str(empty)).list_files()
    assert "\n" not in str(refused.value)
    assert empty.read_text() == ""  # nothing was auto-added

    other = tmp_path / "other_known_hosts"  # the right name, another server's key
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()
    other.write_text(f"[127.0.0.1]:{server.port} {impostor}")
    with pytest.raises(InboxUnavailable, match="does not match"):
        SftpInbox.from_url(server.url(), str(server.client_key_file), str(other)).list_files()
    assert other.read_text() == f"[127.0.0.1]:{server.port} {impostor}"


def test_wrong_key_and_missing_files_are_one_line_errors(server, tmp_path):
    wrong = tmp_path / "wrong_key"
    wrong.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh"))
    wrong.chmod(0o600)
    with pytest.raises(InboxUnavailable, match="authentication as bdt@127.0.0.1.* failed"):
        SftpInbox.from_url(server.url(), str(wrong), str(server.known_hosts_file)).list_files()
    with pytest.raises(InboxUnavailable, match="private key file .* does not exist"):
        SftpInbox.from_url(server.url(), str(tmp_path / "nope"),
                           str(server.known_hosts_file)).list_files()
    with pytest.raises(InboxUnavailable, match="known_hosts file .* does not exist"):
        SftpInbox.from_url(server.url(), str(server.client_key_file),
                           str(tmp_path / "nope")).list_files()


def test_outage_then_recovery_on_one_resource(server):
    write(server.root / "inbox/communitycare/communitycare_PA_202401_eligibility.csv")
    inbox = inbox_for(server)
    assert len(inbox.list_files()) == 1  # connection opened and kept
    server.stop()
    with pytest.raises(InboxUnavailable, match="cannot reach bdt@127.0.0.1") as down:
        inbox.list_files()
    assert "\n" not in str(down.value) and "Traceback" not in str(down.value)
    server.start()
    assert len(inbox.list_files()) == 1  # reconnects by itself
    server.restart()  # the kept connection dies with the server; the next call reconnects
    assert inbox.read_bytes("communitycare/communitycare_PA_202401_eligibility.csv") == b"x"
    inbox.close()


def test_openssh_partner_upload_is_listed_and_read(server, tmp_path):
    """Interop: a partner using OpenSSH's sftp client drops a file; our inbox reads it."""
    payload = b"record_id,first_name\n1,Ana\n" * 100
    local = tmp_path / "communitycare_PA_202401_eligibility.csv"
    local.write_bytes(payload)
    marker = tmp_path / (local.name + ".done")
    marker.write_bytes(b"")
    result = openssh_sftp(server, ["cd /inbox", "-mkdir communitycare", "cd communitycare",
                                   f"put {local}", f"put {marker}"])
    assert result.returncode == 0, result.stderr
    inbox = inbox_for(server)
    [file] = inbox.list_files()
    assert (file.path, file.size, file.has_done_marker) == (
        f"communitycare/{local.name}", len(payload), True)
    assert inbox.read_bytes(file.path) == payload
    inbox.mark_processed(file.path)
    listed = openssh_sftp(server, ["ls -1 /inbox/communitycare", "ls -1 /inbox/processed/communitycare"])
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count(local.name) == 1 and ".done" not in listed.stdout


def test_bdt_ingest_exits_2_with_one_line_on_unknown_host_key(server, tmp_path, monkeypatch,
                                                              capsys):
    from bdt_platform import cli

    write(server.root / "inbox/communitycare/communitycare_PA_202401_eligibility.csv")
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    home = tmp_path / "home"
    for name, value in {"BDT_HOME": str(home), "BDT_PII_KEY": TEST_PII_KEY,
                        "DAGSTER_HOME": str(home / "dagster"), "BDT_INBOX": server.url(),
                        "BDT_SFTP_KEY": str(server.client_key_file),
                        "BDT_SFTP_KNOWN_HOSTS": str(empty)}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["ingest", "--settle", "0"]) == 2
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if "unavailable" in line]
    assert "host key of [127.0.0.1]" in line and "refusing to connect" in line
    assert "Traceback" not in out

    monkeypatch.delenv("BDT_SFTP_KNOWN_HOSTS")
    assert cli.main(["ingest"]) == 2
    assert "BDT_SFTP_KNOWN_HOSTS" in capsys.readouterr().err
