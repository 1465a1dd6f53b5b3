"""What the workers' fork server loads before it forks any worker (``workers._PRELOADED``).

Importing this module imports the parsing code (pandas, pandera, pyarrow: ~1.3 s) and the lake
archive's writer (``storage.archive``: UPath, fsspec), and warms
pandera up (``validation.warm_up``: its backends load on the first validation, ~0.3 s), once in the
server: every worker forked from it starts with both done. The objects those made are then
frozen (``gc.freeze``): a worker's garbage collections skip them, and do not write to (copy)
the memory pages it shares with the server.
"""

import gc

from bdt_platform.feeds import parsing  # noqa: F401 - the chunk pipeline and all its steps
from bdt_platform.feeds import validation
from bdt_platform.storage import archive  # noqa: F401 - workers write archive copies

try:
    validation.warm_up()
except Exception:  # noqa: BLE001 - only a warm-up: each worker then warms up on its first chunk,
    pass  # where a real error is raised and reported with the chunk's files
gc.freeze()
