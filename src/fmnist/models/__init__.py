"""Model registry: every architecture is built by name (`create_model("vgg", cfg="S")`)."""

from fmnist.models import alexnet, lenet, mlp, smallcnn, vgg  # noqa: F401  (explicit registration)
from fmnist.models.base import Classifier
from fmnist.models.zoo import count_flops, count_parameters, create_model, describe_models, list_models

__all__ = ["Classifier", "count_flops", "count_parameters", "create_model", "describe_models", "list_models"]
