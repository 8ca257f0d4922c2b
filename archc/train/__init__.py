"""Brief training: the ``train`` objective of ``archc search`` and ``archc ablate``.

    score = TrainScore(TrainConfig(data="~/data/imagenette", steps=200))   # or data=None: synthetic
    top1 = score(spec)                                                     # val top-1 %, a float

``folder`` reads an ImageFolder with PIL (no torchvision), ``synthetic`` makes a seeded learnable set,
``loop`` trains one candidate, ``score`` wraps it as a search score function. The names import on first use
(``archc.lazy``): ``TrainConfig`` alone does not load torch, so the CLI's training flags list its defaults fast.
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_attributes
from .config import TrainConfig

_PUBLIC = {"TrainResult": "loop", "train_candidate": "loop", "training_spec": "loop", "NAME": "score",
           "Score": "score", "TrainScore": "score", "open_data": "score"}

__all__ = sorted(["TrainConfig", *_PUBLIC])

__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC, globals())

if TYPE_CHECKING:
    from .loop import TrainResult, train_candidate, training_spec
    from .score import NAME, Score, TrainScore, open_data
