"""Analyses of trained or random models: activation spectra, CBN rank, decoder propagation reports.

Import from the submodules; re-exports are added here at release.
"""
