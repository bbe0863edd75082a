"""Per-frequency transfer matrices and singular values of conv layers (stride, padding, transposed conv,
upsampling). ``spectral.conv`` holds the canonical conv-layer description and multipliers.

Import from the submodules; re-exports are added here at release.
"""
