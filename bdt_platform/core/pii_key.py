"""Where the tokenization key comes from, as a Dagster resource that never shows the secret in the UI
(the tokenizing itself is ``core.pii``, which worker processes import without Dagster)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg


class PiiKeyResource(dg.ConfigurableResource):
    """Where the HMAC key for person tokens comes from: an environment variable (set as
    ``dg.EnvVar("BDT_PII_KEY")`` so the UI shows only the name) or a local key file."""

    key: str | None = None
    key_file: str | None = None

    def secret(self) -> str:
        if self.key:
            return self.key
        if self.key_file and Path(self.key_file).exists():
            return Path(self.key_file).read_text().strip()
        raise RuntimeError("no PII key configured: set BDT_PII_KEY")
