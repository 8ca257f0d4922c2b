"""Zero-cost proxies: score an untrained candidate from one or a few forward/backward passes.

``PROXIES`` maps a name to a function ``(model, inputs, targets) -> float`` (higher = predicted
better). ``PROXY_SETTINGS`` holds each proxy's batch and resolution (chosen for a few seconds per
FastViT-sized net on a CPU; see docs/PROXIES.md). ``score(spec_or_model, name)`` builds the model
with seeded weights if needed, makes seeded random inputs and computes one proxy, so the same call
gives the same number. ``DEFAULT`` is the proxy that ranks the published FastViT points best as
measured (``archc proxies --eval`` and ``benchmarks/proxy_eval.py`` over seeds 0-2; docs/PROXIES.md).
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_attributes
from .names import DEFAULT, NAMES, check_name, objective_label

__all__ = ["DEFAULT", "NAMES", "PROXIES", "PROXY_SETTINGS", "ProxySettings", "check_name", "objective_label",
           "params_proxy", "score"]

__getattr__, __dir__ = lazy_attributes(__name__, {n: "registry" for n in ("PROXIES", "PROXY_SETTINGS", "ProxySettings", "params_proxy", "score")},
                                       globals())

if TYPE_CHECKING:
    from .registry import PROXIES, PROXY_SETTINGS, ProxySettings, params_proxy, score
