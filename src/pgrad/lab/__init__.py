"""Experiments that measure policy-gradient theory: exact gradients, estimator variance and
bias, mixed strategies."""
