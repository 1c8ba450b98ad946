"""Synthetic layer-group generator and the labelling pipeline that builds training datasets."""

#: How a dataset's labels are chosen (`synth --sampling`; here, not in pipeline.py, so the CLI can list
#: them without importing the pipeline). sobol: Sobol groups, each measured at every core count;
#: spread: the same groups, each at one core count (every K consecutive groups take each of the K counts
#: once), so a budget buys K times the distinct groups; active: rounds that measure where the model is
#: unsure (active.py).
SAMPLINGS = ("sobol", "spread", "active")
