"""Brief training: the ``train`` objective of ``archc search`` and ``archc ablate``.

    score = TrainScore(TrainConfig(data="~/data/imagenette", steps=200))   # or data=None: synthetic
    top1 = score(spec)                                                     # val top-1 %, a float

``folder`` reads an ImageFolder with PIL (no torchvision), ``synthetic`` makes a seeded learnable set,
``loop`` trains one candidate, ``score`` wraps it as a search score function.
"""
from .config import TrainConfig
from .loop import TrainResult, train_candidate, training_spec
from .score import NAME, Score, TrainScore, open_data

__all__ = ["NAME", "Score", "TrainConfig", "TrainResult", "TrainScore", "open_data", "train_candidate",
           "training_spec"]
