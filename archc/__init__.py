"""archc: a config compiler and latency-constrained search tool for FastViT-style hybrid vision transformers.

The small public API::

    spec = archc.load_spec("specs/sa12.yaml")     # YAML -> checked, frozen Spec
    model = archc.build(spec)                      # train-time nn.Module (timm-compatible names)
    archc.load_weights(model, "fastvit_sa12.pt")   # timm, Apple ml-fastvit or archc checkpoints
    archc.list_models("fastvit*")                  # shipped models by name (timm's names)
    model = archc.create_model("fastvit_sa12", weights="fastvit_sa12.pt", deploy=True)
"""
from .builder import ArchNet, build
from .errors import (ArchcError, DataError, DeviceError, ExportError, LoweringError, SearchError, SpecError,
                     TrainError, WeightsError)
from .spec import Spec, load_spec, save_spec, spec_to_yaml
from .weights import load_weights, save_weights

__version__ = "0.1.0"

__all__ = [
    "ArchNet", "ArchcError", "DataError", "DeviceError", "ExportError", "LoweringError", "SearchError", "Spec", "SpecError",
    "TrainError", "WeightsError", "build", "load_spec", "load_weights", "save_spec", "save_weights", "spec_to_yaml",
]

from .deploy import deploy_model  # noqa: E402  (imports the pass, which needs the builder)
from .passes import reparameterize  # noqa: E402
from .passes.kernels import lower_for_kernels  # noqa: E402

from .models import create_model, list_models  # noqa: E402

__all__ += ["create_model", "deploy_model", "list_models", "lower_for_kernels", "reparameterize"]
