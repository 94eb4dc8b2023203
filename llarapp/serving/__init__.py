"""Torch-free serving: load a bundle (:mod:`.bundle`), score with onnxruntime
(:mod:`.runtime`), retrieve then rerank (:mod:`.engine`)."""
