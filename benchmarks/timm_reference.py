"""Reference files for timm parity without timm: keys, shapes, counts and logits of timm's models.

For each model: timm's model gets ``archc.testing.seeded_state_dict(model.state_dict(), SEED)`` (weights
keyed only by seed and parameter name, so archc's build of the same architecture gets bit-equal weights
from the same call), runs in eval mode on ``archc.testing.seeded_input((2, 3, S, S), INPUT_SEED)``, and the
file stores what a test needs to check archc against it with no timm installed:

- ``keys``: every state-dict key with its shape and dtype, in timm's order (strict loading);
- ``logits``: timm's eval logits; ``logits_reparam``: after timm's ``reparameterize_model``;
- ``logits64`` / ``logits_reparam64``: the same computed in float64 (model and input cast), so a test can
  compare archc's float64 output with a tolerance set by float32's rounding of the computation, on any CPU
  (float32 logits differ between CPUs by that rounding: AVX-512 vs AVX2 sum in other orders);
- ``params`` / ``macs`` of timm's train model and ``params_reparam`` / ``macs_reparam`` of the
  reparameterized one (MACs: torch's ``FlopCounterMode`` / 2, batch 1, on the meta device);
- ``reparam_keys``: the reparameterized model's keys and shapes.

timm is an anchor, never an archc dependency: run with the anchor venv and archc on the path::

    PYTHONPATH=. /tmp/archc-anchor-venv/bin/python benchmarks/timm_reference.py mobileone_s0 poolformer_s12 ...

Files go to ``tests/reference/timm/<model>.pt`` (a few tens of KB each; load with ``weights_only=True``).
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Dict, List

import torch

from archc.testing import seeded_input, seeded_state_dict

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "reference" / "timm"
SEED, INPUT_SEED, BATCH = 0, 1, 2


def _keys(model: torch.nn.Module) -> Dict[str, List]:
    return {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in model.state_dict().items()}


def _macs(model: torch.nn.Module, size: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty((1, 3, size, size), device="meta"))
    return counter.get_total_flops() // 2


@torch.no_grad()
def float64_logits(model: torch.nn.Module, x: torch.Tensor) -> Dict[str, torch.Tensor]:
    """timm's train-graph and reparameterized logits in float64 (timm folds in the model's dtype)."""
    from timm.utils.model import reparameterize_model

    model64 = copy.deepcopy(model).double().eval()
    logits = model64(x.double())
    deploy = reparameterize_model(model64).eval()
    return {"logits64": logits.clone(), "logits_reparam64": deploy(x.double()).clone()}


@torch.no_grad()
def add_float64(name: str, path: Path) -> Dict[str, object]:
    """An existing reference file with float64 logits added; its float32 fields stay as they were made."""
    import timm

    ref = torch.load(path, weights_only=True)
    model = timm.create_model(name, pretrained=False).eval()
    model.load_state_dict(seeded_state_dict(model.state_dict(), ref["seed"]), strict=True)
    return {**ref, **float64_logits(model, seeded_input(tuple(ref["input_shape"]), ref["input_seed"]))}


@torch.no_grad()
def reference(name: str) -> Dict[str, object]:
    import timm
    from timm.utils.model import reparameterize_model

    model = timm.create_model(name, pretrained=False).eval()
    size = model.pretrained_cfg["input_size"][-1]
    model.load_state_dict(seeded_state_dict(model.state_dict(), SEED), strict=True)
    x = seeded_input((BATCH, 3, size, size), INPUT_SEED)
    logits = model(x)
    deploy = reparameterize_model(copy.deepcopy(model)).eval()
    return {**float64_logits(model, x),
        "model": name, "timm": str(timm.__version__), "torch": str(torch.__version__), "seed": SEED,
        "input_seed": INPUT_SEED, "input_shape": [BATCH, 3, size, size], "keys": _keys(model),
        "logits": logits.clone(), "logits_reparam": deploy(x).clone(),
        "params": sum(p.numel() for p in model.parameters()),
        "params_reparam": sum(p.numel() for p in deploy.parameters()),
        "macs": _macs(model, size), "macs_reparam": _macs(deploy, size), "reparam_keys": _keys(deploy),
    }


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="timm model names, e.g. mobileone_s0 poolformer_s12")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--add-float64", action="store_true",
                    help="add float64 logits to existing files, keeping their float32 fields")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        path = args.out / f"{name}.pt"
        ref = add_float64(name, path) if args.add_float64 else reference(name)
        torch.save(ref, path)
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {ref['params']:,} params "
              f"({ref['params_reparam']:,} reparameterized), {ref['macs'] / 1e9:.3f} GMACs "
              f"({ref['macs_reparam'] / 1e9:.3f}), max |logit| {ref['logits'].abs().max():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
