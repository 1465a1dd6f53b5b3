"""The test SFTP server (``synthetic.sftp_server``) in a process of its own, with a fault: it
kills itself (SIGKILL, as a crashed or OOM-killed server dies) once it has served a number of
bytes of file reads, and/or serves reads slowly (a slow link); it writes how many bytes it has
served to a progress file. Started again over the same work folder and port (plain
``server_process(workdir, port)``) it is the same server: same host key, client key and files.

    python -m bdt_platform_tests.faulty_sftp WORKDIR [--port P] [--die-after-bytes N]
        [--bytes-per-second R] [--progress FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bdt_platform.synthetic import sftp_server
from bdt_platform.synthetic.sftp_server import ServerProcess


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("--port", type=int)
    parser.add_argument("--die-after-bytes", type=int)
    parser.add_argument("--bytes-per-second", type=float)
    parser.add_argument("--progress")
    args = parser.parse_args(argv)
    served = 0
    original = sftp_server._ChrootSftp.read

    def read(self, file_obj, offset, size):
        nonlocal served
        data = original(self, file_obj, offset, size)
        served += len(data)
        if args.progress:
            Path(args.progress).write_text(str(served))
        if args.die_after_bytes is not None and served >= args.die_after_bytes:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-transfer: this read is never answered
        if args.bytes_per_second:
            time.sleep(len(data) / args.bytes_per_second)
        return data

    sftp_server._ChrootSftp.read = read
    return sftp_server.main([args.workdir, *([str(args.port)] if args.port else [])])


@contextlib.contextmanager
def faulty_server_process(workdir: Path, port: int | None = None, *,
                          die_after_bytes: int | None = None,
                          bytes_per_second: float | None = None,
                          progress: Path | None = None) -> Iterator[tuple[ServerProcess,
                                                                          subprocess.Popen]]:
    """The server in a child process until the block ends (or it killed itself)."""
    command = [sys.executable, "-m", "bdt_platform_tests.faulty_sftp", str(workdir)]
    for flag, value in (("--port", port), ("--die-after-bytes", die_after_bytes),
                        ("--bytes-per-second", bytes_per_second), ("--progress", progress)):
        if value is not None:
            command += [flag, str(value)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        base_url = process.stdout.readline().strip()
        if not base_url.startswith("sftp://"):
            raise RuntimeError(f"the SFTP server process did not start (exit {process.poll()})")
        yield ServerProcess(base_url, Path(workdir)), process
    finally:
        with contextlib.suppress(BrokenPipeError, OSError):
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    sys.exit(main())
