"""Diagnostics that can fail: the coordinate check (:mod:`.coord_check`) and spectral ratios
(:mod:`.spectral`). Submodules are imported where used, so importing this package costs nothing."""
