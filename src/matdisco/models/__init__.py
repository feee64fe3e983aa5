"""Property models: deep networks (ElemNet, IRNet, ...) and Random Forest baselines."""

from matdisco.models.forest import ForestRegressor
from matdisco.models.nets import (
    ARCHITECTURES,
    DeepRegressor,
    build_network,
    count_parameters,
)
from matdisco.models.neural import NeuralRegressor

__all__ = [
    "ARCHITECTURES",
    "DeepRegressor",
    "ForestRegressor",
    "NeuralRegressor",
    "build_network",
    "count_parameters",
]
