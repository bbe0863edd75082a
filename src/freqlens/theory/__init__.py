"""Theory, float64 NumPy/SciPy only (never torch; tests/test_layering.py checks the source and a fresh import):

* ``linear_dynamics``: sigmoids, transformed ODEs, averaged dynamics, soft winner-takes-all, minimal norm.
* ``bottleneck``: representation-cost bounds (C9), linear closed form (L1), identity costs (C11), depth fit.
* ``decoder_som``: Dirichlet kernel, SOM of random conv stacks, zero-padding leak, upsampling replicas.
"""

from . import bottleneck, decoder_som, linear_dynamics

__all__ = ["bottleneck", "decoder_som", "linear_dynamics"]
