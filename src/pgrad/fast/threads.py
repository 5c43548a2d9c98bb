"""Thread settings: small networks run fastest, and reproducibly, on one thread."""

from __future__ import annotations

import torch
from threadpoolctl import threadpool_limits


def set_threads(threads: int) -> None:
    """Run torch's ops and NumPy's BLAS on ``threads`` threads each."""
    torch.set_num_threads(threads)
    threadpool_limits(threads, user_api="blas")
