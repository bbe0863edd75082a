"""Theory (float64 NumPy/SciPy, never torch): linear dynamics, bottleneck costs and bounds, decoder SOM.

Import from the submodules; re-exports are added here at release.
"""
