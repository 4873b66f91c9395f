"""How many images one request may ask for: the one source of these numbers (docs/limits.md).

``emogen generate`` / ``emogen fuse`` have no upper limit (a batch job: ``--num-images`` ≥ 1,
written to disk in batches of ``--batch-size``); a request to the served model
(``mlflow models serve``, per input row) or to the demo page waits for its answer in memory,
so it is capped.
"""

from __future__ import annotations

MIN_IMAGES = 1
SERVED_MAX_IMAGES = 64  # per input row of the registered generator (mlflow models serve, pyfunc predict)
DEMO_MAX_IMAGES = 32  # per click of the demo page (`emogen demo`)
