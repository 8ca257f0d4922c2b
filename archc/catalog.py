"""What ships inside the package: specs by model name, search spaces by name, published figures.

A plain ``pip install .`` leaves no ``specs/`` folder beside the user, so every place that takes a spec
path also takes a model name (``fastvit_sa12``, as timm names it) and every place that takes a space
path takes a space name (``fastvit``). The index is built from the files themselves: a spec's name is
its own top-level ``name:`` key, so a new spec file under ``archc/data/specs`` is found without code.
A path that exists always wins over a name.
"""
from __future__ import annotations

import fnmatch
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import yaml

from .errors import ArchcError, SpecError, did_you_mean

DATA_DIR = Path(__file__).resolve().parent / "data"
SPECS_DIR = DATA_DIR / "specs"
SPACES_DIR = DATA_DIR / "search"
REFERENCE_DIR = DATA_DIR / "reference"


def _own_name(path: Path) -> Optional[str]:
    """The file's own top-level ``name:`` (not an inherited one); None if it sets none."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name.strip() else None


@lru_cache(maxsize=None)
def _index(directory: Path) -> Tuple[Dict[str, Path], Dict[str, List[Path]]]:
    """name -> file for every YAML file under ``directory``; and the names more than one file claims."""
    found: Dict[str, List[Path]] = {}
    for path in sorted(directory.rglob("*.yaml")):
        name = _own_name(path)
        if name:
            found.setdefault(name, []).append(path)
    return {n: ps[0] for n, ps in found.items()}, {n: ps for n, ps in found.items() if len(ps) > 1}


def model_index() -> Dict[str, Path]:
    """Every shipped spec by its model name (sorted by name)."""
    return dict(sorted(_index(SPECS_DIR)[0].items()))


def duplicate_names() -> Dict[str, List[Path]]:
    """Model names that more than one shipped spec claims (a packaging mistake; tests keep it empty)."""
    return _index(SPECS_DIR)[1]


def list_models(pattern: str = "*") -> List[str]:
    """Shipped model names matching a shell-style pattern, e.g. ``list_models("fastvit*")``, sorted."""
    return [n for n in model_index() if fnmatch.fnmatchcase(n, pattern)]


def looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith((".yaml", ".yml"))


def spec_path(name: str) -> Path:
    """The shipped spec file of model ``name``; an ArchcError with a did-you-mean if there is none."""
    index = model_index()
    if name in duplicate_names():
        files = ", ".join(str(p) for p in duplicate_names()[name])
        raise SpecError(f"model name '{name}' is claimed by several shipped specs: {files}")
    if name not in index:
        raise SpecError(f"no spec file '{name}' and no shipped model of that name{did_you_mean(name, index)}; "
                        "list the models with `archc models`")
    return index[name]


#: file endings that make a SPEC argument a checkpoint (it stores its spec) rather than a YAML file or a name
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


def is_checkpoint_path(text) -> bool:
    return str(text).lower().endswith(CHECKPOINT_SUFFIXES)


def resolve_spec(source: Union[str, Path]) -> Path:
    """A spec path as given if the file exists, else the shipped spec of that model name.

    A missing path that looks like one (``specs/x.yaml``) is returned as is, so the loader's own
    'file not found' error names it.
    """
    p = Path(source)
    if p.exists() or looks_like_path(str(source)):
        return p
    return spec_path(str(source))


def space_index() -> Dict[str, Path]:
    """Every shipped search space by its ``name:`` (``fastvit``, ``tiny``)."""
    return dict(sorted(_index(SPACES_DIR)[0].items()))


def resolve_space(source: Union[str, Path]) -> Path:
    """A space path as given if it exists; else a shipped space by name, or by its path relative to the
    repository (``search/fastvit.yaml``, the form the README uses) so it works after ``pip install .``."""
    p = Path(source)
    if p.exists():
        return p
    spaces = space_index()
    if str(source) in spaces:
        return spaces[str(source)]
    if not p.is_absolute() and len(p.parts) == 2 and p.parts[0] == "search" and (SPACES_DIR / p.name).is_file():
        return SPACES_DIR / p.name
    if not looks_like_path(str(source)):
        raise SpecError(f"no space file '{source}' and no shipped search space of that name{did_you_mean(str(source), spaces)}; "
                         f"shipped: {', '.join(spaces)} (or give a space file path)")
    return p


def reference_csv(name: str) -> Path:
    """A published-figures table shipped in ``archc/data/reference`` (e.g. ``published_fastvit.csv``)."""
    path = REFERENCE_DIR / name
    if not path.is_file():
        raise ArchcError(f"{path}: shipped reference table missing (a broken install?)")
    return path
