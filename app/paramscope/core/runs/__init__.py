"""Many checkpoints at once: a training run's checkpoints over time, audits on a Dask cluster."""
