"""The bottom layer: argument checks, atomic files, paths, the attack engine's plumbing, bootstrap statistics."""
