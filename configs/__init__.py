"""Hydra config groups shipped with mupx (the top-level configs/ folder, installed as mupx.configs)."""
