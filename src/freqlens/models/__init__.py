"""Models (plain PyTorch ``nn.Module``): linear CNN/FCNN, deep circular CNNs, decoders.

Import from the submodules (e.g. ``freqlens.models.linear``); re-exports are added here at release.
"""
