"""Model execution for serving: a Predictor over an artifact and a micro-batcher; knows nothing of HTTP."""

from fmnist.inference.batcher import MicroBatcher
from fmnist.inference.predictor import Prediction, Predictor

__all__ = ["MicroBatcher", "Prediction", "Predictor"]
