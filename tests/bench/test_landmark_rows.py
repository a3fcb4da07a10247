"""bench.landmark_rows's vote over the rows a lookup reads: the recording whose rows line up with the query's
times wins over one that holds the same hashes at scattered times."""

import numpy as np

from bench.landmark_index import QueryCase
from bench.landmark_rows import top_recording


def test_rows_that_line_up_win_over_scattered_ones() -> None:
    hashes = np.arange(100, 130, dtype=np.uint32)
    times = np.arange(0, 3000, 100, dtype=np.int32)
    case = QueryCase(1, 0, hashes, times)
    aligned = [{"hash": int(h), "audio_id": 1, "time_ms": int(t) + 4000} for h, t in zip(hashes, times, strict=True)]
    scattered = [{"hash": int(h), "audio_id": 2, "time_ms": 997 * i} for i, h in enumerate(hashes)]
    assert top_recording(case, scattered + aligned) == 1
    assert top_recording(case, []) == -1
