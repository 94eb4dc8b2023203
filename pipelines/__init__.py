"""KFP pipelines: training (``training.py``) and its local runner (``local_run.py``)."""
