"""The MLflow model registry: one model version per serving bundle, and the aliases that
say where each version runs (candidate → staging → canary → production)."""
