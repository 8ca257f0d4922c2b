"""Every registered kind keeps the contract (archc/contract.py), and docs/ADD_A_BLOCK.md's walkthrough, applied
for real to a copy of the package, gives a kind that keeps it too."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from archc.blocks import MIXERS
from archc.contract import FAMILIES, check_kind, minimal_specs
from archc.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]
KINDS = [(family, kind) for family, registry in FAMILIES.items() for kind in registry]


@pytest.mark.parametrize("family, kind", KINDS, ids=[f"{f}-{k}" for f, k in KINDS])
def test_every_registered_kind_keeps_the_contract(family, kind):
    result = check_kind(family, kind)
    assert result["instances"] > 0
    assert result["problems"] == []


def test_the_contract_fails_a_kind_whose_deploy_graph_keeps_an_undeclared_batchnorm():
    """The check can fail: the doc's max-pool mixer without its ``deploy_leaves`` leaves a BatchNorm behind."""
    import dataclasses

    import torch.nn as nn

    from archc.blocks.kind import Kind, opt, type_field
    from archc.blocks.stage import check_ffn, metaformer_estimate, metaformer_stage, build_ffn
    from archc.nn import MetaFormerBlock

    class MaxPooling(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.pool = nn.MaxPool2d(k, 1, k // 2)

        def forward(self, x):
            return self.pool(x) - x

    @dataclasses.dataclass(frozen=True)
    class Params:
        type: str = type_field("maxpool_undeclared")
        max_pool_size: int = opt(3, "window", min=1, max=7, odd=True)

    def block(ctx, drop_path):
        s = ctx.stage
        return MetaFormerBlock(s.width, MaxPooling(ctx.params.max_pool_size), build_ffn(ctx, pre_norm=False),
                               ctx.norm, s.ffn == "mlp", ctx.spec.layer_scale_init, drop_path)

    MIXERS.register(Kind("maxpool_undeclared", "test only", Params, metaformer_stage(block), check_ffn,
                         estimate=metaformer_estimate))
    try:
        problems = [p for p in check_kind("mixer", "maxpool_undeclared")["problems"] if "BatchNorm remains" in p]
    finally:
        MIXERS._kinds.pop("maxpool_undeclared")
    assert problems, "an undeclared BatchNorm left in the deploy graph must break the contract"


def test_a_kind_that_refuses_a_norm_is_refused_by_name():
    import dataclasses

    kind = MIXERS["pool"]
    MIXERS._kinds["pool"] = dataclasses.replace(kind, norms=("groupnorm",))
    try:
        refused = [spec for _, data, spec in minimal_specs("mixer", "pool") if data["norm"] == "batchnorm"]
        assert refused and all(isinstance(s, SpecError) for s in refused)
        assert all("'batchnorm'" in str(s) and "pool" in str(s) and "groupnorm" in str(s) for s in refused)
    finally:
        MIXERS._kinds["pool"] = kind


def _walkthrough_blocks(doc: str):
    """The three steps of docs/ADD_A_BLOCK.md's worked example: the module, the kind file, the registering import."""
    example = doc[doc.index("## Worked example"):]
    code = re.findall(r"```python\n(.*?)```", example, re.S)
    register = re.search(r"`(from \. import [^`]*maxpool[^`]*)`", example)
    assert len(code) >= 2 and register, "docs/ADD_A_BLOCK.md's worked example lost its three steps"
    kind_file = re.search(r"e\.g\. `archc/blocks/(\w+\.py)`", example).group(1)
    return code[0], kind_file, code[1], register.group(1)


@pytest.mark.slow
def test_the_add_a_block_walkthrough_gives_a_kind_that_keeps_the_contract(tmp_path):
    module_code, kind_file, kind_code, register = _walkthrough_blocks((ROOT / "docs" / "ADD_A_BLOCK.md").read_text())
    pkg = tmp_path / "archc"
    shutil.copytree(ROOT / "archc", pkg, ignore=shutil.ignore_patterns("__pycache__", "groundtruth"))
    with open(pkg / "nn" / "blocks.py", "a") as f:                                   # 1. the torch module
        f.write("\n\n" + module_code)
    (pkg / "blocks" / kind_file).write_text(kind_code)                               # 2. the kind
    init = (pkg / "blocks" / "__init__.py").read_text()                             # 3. register it
    init, n = re.subn(r"^from \. import [^\n]*\(registration\)$", register + "  # noqa: F401  (registration)", init,
                      count=1, flags=re.M)
    assert n == 1
    (pkg / "blocks" / "__init__.py").write_text(init)
    script = ("import json; from archc.contract import check_kind; "
              "print(json.dumps(check_kind('mixer', 'maxpool')))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["instances"] > 0 and result["problems"] == [], result
