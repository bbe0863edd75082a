"""Training: the fast Fourier-domain trainer for the linear models, one generic torch loop, recorders.

Import from the submodules; re-exports are added here at release.
"""
