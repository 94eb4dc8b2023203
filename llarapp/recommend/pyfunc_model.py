"""The file MLflow runs to build the model (models from code); see llarapp.recommend.pyfunc."""

import mlflow

from llarapp.recommend.pyfunc import BundleRecommender

mlflow.models.set_model(BundleRecommender())
