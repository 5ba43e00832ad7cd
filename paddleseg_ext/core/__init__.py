"""Training, evaluation and prediction loops (PaddleSeg 2.8's own fail on Paddle 3.3)."""

from .evaluate import evaluate
from .predict import predict
from .train import train

__all__ = ["evaluate", "predict", "train"]
