"""Model execution, for every door (server, batch): a Predictor over an artifact, a micro-batcher, the
pipeline's stages (decode -> preprocess -> infer -> assess) and the answer made from a Result; knows
nothing of HTTP."""

from fmnist.inference.batcher import MicroBatcher
from fmnist.inference.pipeline import Limits, Result, ServedModel
from fmnist.inference.predictor import Prediction, Predictor

__all__ = ["Limits", "MicroBatcher", "Prediction", "Predictor", "Result", "ServedModel"]
