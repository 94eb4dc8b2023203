"""Deploy a registered model version as a KServe InferenceService and move its alias."""
