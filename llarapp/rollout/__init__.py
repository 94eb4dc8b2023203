"""Canary rollout of the InferenceService: start, promote, roll back, or let ``auto``
decide from Prometheus, with the MLflow aliases moved to match."""
