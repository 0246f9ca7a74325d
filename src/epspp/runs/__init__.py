"""A run folder: the write rule, its folder policy, its logs and progress, provenance, the mask files it holds."""
