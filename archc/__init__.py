"""archc: a config compiler and latency-constrained search tool for FastViT-style hybrid vision transformers.

The small public API::

    spec = archc.load_spec("specs/sa12.yaml")     # YAML -> checked, frozen Spec
    model = archc.build(spec)                      # train-time nn.Module (timm-compatible names)
    archc.load_weights(model, "fastvit_sa12.pt")   # timm, Apple ml-fastvit or archc checkpoints
    archc.list_models("fastvit*")                  # shipped models by name (timm's names)
    model = archc.create_model("fastvit_sa12", weights="fastvit_sa12.pt", deploy=True)

The names import on first use (``archc.lazy``): ``import archc`` and ``archc --help`` do not load torch.
"""
from typing import TYPE_CHECKING

from .errors import (ArchcError, DataError, DeviceError, ExportError, LoweringError, SearchError, SpecError,
                     TrainError, WeightsError)
from .lazy import lazy_attributes

__version__ = "0.1.0"

#: public name -> the submodule that defines it
_PUBLIC = {
    "ArchNet": "builder", "build": "builder",
    "Spec": "spec", "load_spec": "spec", "save_spec": "spec", "spec_to_yaml": "spec",
    "load_weights": "weights", "save_weights": "weights",
    "deploy_model": "deploy", "reparameterize": "passes", "lower_for_kernels": "passes.kernels",
    "create_model": "models", "list_models": "models",
}

__all__ = ["ArchcError", "DataError", "DeviceError", "ExportError", "LoweringError", "SearchError", "SpecError",
           "TrainError", "WeightsError", *_PUBLIC]

__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC, globals())

if TYPE_CHECKING:  # type checkers and editors see the names as if imported eagerly
    from .builder import ArchNet, build
    from .deploy import deploy_model
    from .models import create_model, list_models
    from .passes import reparameterize
    from .passes.kernels import lower_for_kernels
    from .spec import Spec, load_spec, save_spec, spec_to_yaml
    from .weights import load_weights, save_weights
