"""Labelled datasets: (layer group, cores) -> measured latency, as Parquet shards with a manifest."""
