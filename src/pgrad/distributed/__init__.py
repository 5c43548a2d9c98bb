"""Scaling out past one process on Ray (``pip install 'pgrad[ray]'``): see ``ray_backend``."""
