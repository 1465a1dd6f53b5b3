"""dbt's parse state for a dbt command: the one it is given, fitted to the warehouse it uses.

dbt keeps what it parsed (``partial_parse.msgpack``) and on the next command re-reads only the
files that changed, unless its *state check* differs. The profile's connection values are part
of that check, and the DuckDB output's ``path`` is the home's own warehouse
(``BDT_WAREHOUSE_PATH``). So the project's parse state (``prepare_manifest``'s ``dbt parse``),
which dagster-dbt hands to a home's first command, never fit, nor did a home's own state in a
copy of the home: every new or copied home parsed the whole project once (~3 s of CPU on a
2-core machine; the test suite makes well over a hundred).

The path does not change what dbt parses: nothing in the project reads ``target.path``, and the
parsed nodes carry the warehouse's *name* (``database``, the file's stem), which stays part of the
check. test_dbt_parse_state builds a home's manifest both ways and compares them. So the state a
command starts from (the home's last, else the project's) gets its profile hash written again
for the profile the command runs with, when, and only when:

- whoever made the state recorded the connection values it was parsed with (``SIDECAR``:
  ``prepare_manifest`` for the project's, ``keep_parse_state`` for a home's) and they hash to
  the hash dbt stored in that state, i.e. this module hashes them as dbt does (dbt's
  ``ManifestLoader.build_manifest_state_check``: the sorted ``(key, value)`` pairs of
  ``credentials.connection_info()``, pretty-printed, sha256);
- the command's connection values differ from those in ``path`` at most;
- the state's msgpack is written back byte for byte but for the hash.

Anything else (another warehouse file name, another target, dbt's format or hashing changed, a
missing or stale record) hands dbt the state as it is, and dbt parses in full if it must, as it
would without this module.
"""

from __future__ import annotations

import contextvars
import json
import os
import pprint
from collections.abc import Mapping
from pathlib import Path

import msgpack

PARSE_STATE = "partial_parse.msgpack"
#: Beside the project's parse state: the connection values it was parsed with and their hash.
SIDECAR = "partial_parse.profile.json"
PROFILE_NAME = "bdt_platform"
#: The only connection value a home's first command may differ in from the project's state.
FITTED_KEY = "path"


def connection_values(project_dir: Path, environ: Mapping[str, str]) -> list[tuple[str, object]]:
    """The profile's connection values for the target ``environ`` selects, rendered by dbt's own
    profile code with ``environ`` as the environment, sorted as dbt hashes them."""
    def render():
        from dbt.config.profile import Profile, read_profile
        from dbt.config.renderer import ProfileRenderer
        from dbt_common.context import set_invocation_context

        set_invocation_context(dict(environ))  # env_var() reads it; only in this copied context
        raw = read_profile(str(project_dir))[PROFILE_NAME]
        target, data = Profile.render_profile(raw, PROFILE_NAME, None, ProfileRenderer({}))
        credentials = Profile._credentials_from_profile(data, PROFILE_NAME, target)
        return sorted(credentials.connection_info())

    return contextvars.copy_context().run(render)


def profile_hash(values: list[tuple[str, object]]) -> str:
    from dbt.contracts.files import FileHash

    return FileHash.from_contents(pprint.pformat(values)).checksum


def record(project_dir: Path, target_dir: Path, environ: Mapping[str, str]) -> None:
    """After ``dbt parse`` wrote ``target_dir``'s state with ``environ``: note its connection
    values beside it (nothing when they cannot be rendered or the state is missing)."""
    state = target_dir / PARSE_STATE
    try:
        values = connection_values(project_dir, environ)
        stored = _stored_hash(state.read_bytes())
    except Exception:  # noqa: BLE001 - a record is an optimisation; without it dbt parses
        (target_dir / SIDECAR).unlink(missing_ok=True)
        return
    partial = target_dir / f".{SIDECAR}.{os.getpid()}"
    partial.write_text(json.dumps({"profile_hash": stored, "values": values}, default=str))
    os.replace(partial, target_dir / SIDECAR)


def fitted_state(project_dir: Path, target_dir: Path,
                 environ: Mapping[str, str]) -> bytes | None:
    """The project's parse state in ``target_dir`` with the profile hash of ``environ``'s
    profile, or ``None`` when it cannot be proven to fit (see the module's docstring)."""
    try:
        data = (target_dir / PARSE_STATE).read_bytes()
        noted = json.loads((target_dir / SIDECAR).read_text())
        parsed_with = [tuple(pair) for pair in noted["values"]]
        state = msgpack.unpackb(data, raw=False, strict_map_key=False)
        stored = state["state_check"]["profile_hash"]
        if stored.get("name") != "sha256" or noted["profile_hash"] != stored.get("checksum"):
            return None  # a state parsed since the record was made (e.g. by hand)
        if profile_hash(parsed_with) != stored["checksum"]:
            return None  # dbt hashes the profile another way now
        wanted = connection_values(project_dir, environ)
        if _without_path(wanted) != _without_path(parsed_with):
            return None
        if msgpack.packb(state, use_bin_type=True) != data:
            return None  # a format msgpack does not write back as it was
        stored["checksum"] = profile_hash(wanted)
        return msgpack.packb(state, use_bin_type=True)
    except Exception:  # noqa: BLE001 - any surprise: dbt parses in full, as without this
        return None


def seed(project_dir: Path, target_dir: Path, environ: Mapping[str, str]) -> bool:
    """Before a dbt command of its own (plain ``dbt``, not the resource) in ``target_dir``: the
    project's parse state fitted to ``environ``'s profile, when ``target_dir`` has none yet and
    the state fits. Whether it was written."""
    state = target_dir / PARSE_STATE
    if state.exists():
        return False
    fitted = fitted_state(project_dir, project_dir / "target", environ)
    if fitted is None:
        return False
    target_dir.mkdir(parents=True, exist_ok=True)
    state.write_bytes(fitted)
    return True


def _stored_hash(data: bytes) -> str:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)[
        "state_check"]["profile_hash"]["checksum"]


def _without_path(values: list[tuple[str, object]]) -> list[tuple[str, object]]:
    return [pair for pair in values if pair[0] != FITTED_KEY]
