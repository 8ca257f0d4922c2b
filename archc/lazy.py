"""Package attributes that import on first use (PEP 562), so ``import archc`` and ``archc --help`` do not pay
for torch and Optuna until a command needs them."""
from __future__ import annotations

import importlib
from typing import Callable, Dict, List, Optional, Tuple


def lazy_attributes(package: str, names: Dict[str, str], namespace: dict,
                    default: Optional[str] = None) -> Tuple[Callable, Callable]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``names`` maps a public name to the submodule (relative
    to ``package``) that defines it; any other name that is a submodule (``archc.spec``) imports as one, and
    failing that, with ``default``, is looked up in that submodule (a package whose body moved there).
    A value is stored in ``namespace`` (the package's globals) the first time, so it is looked up once."""

    def __getattr__(name: str):
        if name in names:
            value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        elif name.startswith("__"):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        else:
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
                if default is None or not hasattr(importlib.import_module(f"{package}.{default}"), name):
                    raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
                value = getattr(importlib.import_module(f"{package}.{default}"), name)
        namespace[name] = value
        return value

    def __dir__() -> List[str]:
        extra = dir(importlib.import_module(f"{package}.{default}")) if default else []
        return sorted(set(namespace) | set(names) | {n for n in extra if not n.startswith("_")})

    return __getattr__, __dir__


class LazyModule:
    """A module that imports on its first attribute access. The block kinds name torch's and archc's layers in
    their build functions through one, so reading a spec (its kinds' parameters, checks and geometry) never
    imports torch: a typo in a spec is reported in a fraction of a second."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str) -> LazyModule:
    return LazyModule(name)
