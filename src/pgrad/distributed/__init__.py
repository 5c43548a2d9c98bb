"""Transports for workers, which know nothing of any algorithm: ``hogwild`` (processes on this
machine sharing memory) and ``ray_backend`` (Ray actors, ``pip install 'pgrad[ray]'``).
``pgrad.launch`` plugs them into the algorithms that use them."""
