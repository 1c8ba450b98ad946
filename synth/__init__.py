"""Synthetic layer-group generator and the labelling pipeline that builds training datasets."""
