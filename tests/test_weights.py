"""Checkpoints: archc's own format round-trips; timm/Apple wrappers unwrap; a mismatch is one error listing
missing, unexpected and wrongly shaped keys; a pickle that would run code is refused (weights_only)."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

import archc
from archc.errors import WeightsError
from archc.spec import load_spec
from archc.testing import randomize_
from archc.weights import ARCHC_FORMAT, apple_to_timm_keys, unwrap_state_dict

TINY = {
    "name": "tiny", "input_size": 32, "num_classes": 5,
    "stage_defaults": {"mlp_ratio": 2, "downsample": {"type": "replk", "kernel": 3, "small_kernel": 1}},
    "stages": [{"depth": 1, "width": 16, "mixer": "repmixer"},
               {"depth": 1, "width": 32, "mixer": "attention", "head_dim": 16, "pos_enc": {"kernel": 3}}],
}




@pytest.fixture
def model():
    return randomize_(archc.build(TINY).eval(), seed=3)


def logits(m, seed: int = 0):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return m(x)


def test_archc_format_round_trip(model, tmp_path):
    path = archc.save_weights(model, tmp_path / "sub" / "tiny.pt", spec=model.spec)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == ARCHC_FORMAT and payload["version"] == 1 and payload["deploy"] is False
    assert load_spec(payload["spec"]) == model.spec  # the spec travels with the weights, as plain data
    fresh = archc.build(TINY).eval()
    assert not torch.equal(logits(fresh), logits(model))
    assert archc.load_weights(fresh, path) == "archc"
    assert fresh.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    assert torch.equal(logits(fresh), logits(model))


def test_saved_tensors_are_copies(model, tmp_path):
    path = archc.save_weights(model, tmp_path / "w.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["spec"] is None
    assert all(v.is_contiguous() for v in payload["state_dict"].values())


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "model_ema", "module_prefix"])
def test_unwraps_common_checkpoint_layouts(model, tmp_path, wrap):
    sd = model.state_dict()
    obj = {"plain": sd, "state_dict": {"state_dict": sd, "epoch": 3}, "model": {"model": sd, "optimizer": {}},
           "model_ema": {"model_ema": sd}, "module_prefix": {f"module.{k}": v for k, v in sd.items()}}[wrap]
    torch.save(obj, tmp_path / "c.pt")
    fresh = archc.build(TINY).eval()
    assert archc.load_weights(fresh, tmp_path / "c.pt") == "timm"
    assert torch.equal(logits(fresh), logits(model))
    # a state dict (mapping) in memory loads too
    fresh2 = archc.build(TINY).eval()
    assert archc.load_weights(fresh2, sd) == "timm" and torch.equal(logits(fresh2), logits(model))


def test_mismatch_is_one_error_listing_missing_unexpected_and_misshaped(model, tmp_path):
    sd = dict(model.state_dict())
    del sd["stages.1.blocks.0.mlp.fc1.weight"]
    sd["stages.1.blocks.0.extra.weight"] = torch.zeros(3)
    sd["head.fc.weight"] = torch.zeros(7, 64)
    path = tmp_path / "bad.pt"
    torch.save(sd, path)
    with pytest.raises(WeightsError) as info:
        archc.load_weights(archc.build(TINY), path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}: checkpoint does not fit the model; ")
    assert "1 missing: stages.1.blocks.0.mlp.fc1.weight" in text
    assert "1 unexpected: stages.1.blocks.0.extra.weight" in text
    assert "1 wrongly shaped: head.fc.weight (checkpoint (7, 64), model (5, 64))" in text
    # not strict: missing and unexpected keys are tolerated, wrong shapes never
    with pytest.raises(WeightsError, match="wrongly shaped"):
        archc.load_weights(archc.build(TINY), path, strict=False)
    del sd["head.fc.weight"]
    target = archc.build(TINY)
    archc.load_weights(target, sd, strict=False)
    assert torch.equal(target.state_dict()["stem.0.conv_kxk.0.conv.weight"], model.state_dict()["stem.0.conv_kxk.0.conv.weight"])


def test_a_failed_load_leaves_the_model_untouched(model, tmp_path):
    sd = dict(model.state_dict())
    sd["head.fc.weight"] = torch.zeros(7, 64)
    target = archc.build(TINY).eval()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(WeightsError):
        archc.load_weights(target, sd)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_long_mismatch_lists_are_summarised(tmp_path):
    big = archc.build({**TINY, "stages": TINY["stages"][:1]})
    with pytest.raises(WeightsError) as info:
        archc.load_weights(big, archc.build(TINY).state_dict())
    text = str(info.value)
    assert "unexpected:" in text and "more)" in text and len(text) < 2000


class _RunsCode:
    """Unpickling this calls ``Path.touch(marker)``: stands for any code a hostile checkpoint would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_with_code_in_it_is_refused(model, tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": model.state_dict(), "payload": _RunsCode(marker)}, path)
    with pytest.raises(WeightsError, match="cannot read checkpoint with weights_only=True"):
        archc.load_weights(archc.build(TINY), path)
    assert not marker.exists()
    # a plain pickle too
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(WeightsError):
        archc.load_weights(archc.build(TINY), raw)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # proof the test has teeth: the unsafe load runs it
    assert marker.exists()


@pytest.mark.parametrize("content, message", [
    (None, "checkpoint file not found"),
    (b"not a checkpoint at all", "cannot read checkpoint"),
    ({}, "no state dict found"),
    ([torch.zeros(1)], "no state dict found"),
    ({"w": 3}, "entry 'w' is not a named tensor"),
])
def test_unreadable_checkpoints(tmp_path, content, message):
    path = tmp_path / "c.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(WeightsError, match=message) as info:
        archc.load_weights(archc.build(TINY), path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_format_detection():
    t = torch.zeros(1)
    assert unwrap_state_dict({"stem.0.x": t})[1] == "timm"
    assert unwrap_state_dict({"network.0.x": t, "patch_embed.0.x": t})[1] == "apple"
    assert unwrap_state_dict({"format": "archc", "state_dict": {"stem.0.x": t}})[1] == "archc"


def test_apple_key_mapping_rule():
    """Each ``network.N.proj`` starts a stage; ``pe``/``reparam_conv`` is its positional encoding; other
    entries are blocks; branch names map to timm's."""
    t = torch.zeros(1)
    apple = {k: t for k in [
        "patch_embed.0.rbr_conv.0.conv.weight", "patch_embed.2.rbr_skip.weight",
        "network.0.0.token_mixer.mixer.rbr_scale.bn.bias", "network.0.1.layer_scale",
        "network.1.proj.0.lkb_origin.conv.weight", "network.1.proj.1.rbr_conv.0.bn.weight",
        "network.2.0.convffn.conv.conv.weight", "network.3.proj.0.lkb_origin.bn.bias",
        "network.4.pe.weight", "network.5.0.layer_scale_1", "network.5.0.token_mixer.qkv.weight",
        "conv_exp.se.reduce.weight", "conv_exp.se.expand.bias", "head.weight", "head.bias",
    ]}
    assert sorted(apple_to_timm_keys(apple)) == sorted([
        "stem.0.conv_kxk.0.conv.weight", "stem.2.identity.weight",
        "stages.0.blocks.0.token_mixer.mixer.conv_scale.bn.bias", "stages.0.blocks.1.layer_scale.gamma",
        "stages.1.downsample.proj.0.large_conv.conv.weight", "stages.1.downsample.proj.1.conv_kxk.0.bn.weight",
        "stages.1.blocks.0.mlp.conv.conv.weight", "stages.2.downsample.proj.0.large_conv.bn.bias",
        "stages.2.pos_emb.pos_enc.weight", "stages.2.blocks.0.layer_scale_1.gamma",
        "stages.2.blocks.0.token_mixer.qkv.weight",
        "final_conv.se.fc1.weight", "final_conv.se.fc2.bias", "head.fc.weight", "head.fc.bias",
    ])


def test_a_full_disk_leaves_the_old_checkpoint_and_says_why(tmp_path, monkeypatch, capsys):
    """``archc build --save`` on a full disk: one line naming the file and the reason; the old file is intact."""
    import errno

    import torch

    from archc.cli import main
    path = tmp_path / "t8.pt"
    assert main(["build", "fastvit_t8", "--save", str(path)]) == 0
    before = path.read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        real_save(obj, f, *a, **k)  # a partial file is written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    capsys.readouterr()
    assert main(["build", "fastvit_t8", "--save", str(path)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(path) in err and "Traceback" not in err
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["t8.pt"]


def test_a_save_onto_a_full_disk_is_one_error_and_keeps_the_old_file(model, tmp_path, full_disk):
    """issue 23: torch.save on a full disk ended in a RuntimeError traceback and left a 0-byte file."""
    from archc.errors import ArchcError
    path = tmp_path / "w.pt"
    torch.save({"old": torch.ones(2)}, path)  # written before the disk filled up
    before = path.read_bytes()
    with pytest.raises(ArchcError, match=rf"^checkpoint '{path}': cannot write: No space left on device; nothing "
                                         "was replaced$"):
        archc.save_weights(model, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]


def test_save_refuses_a_target_that_is_not_a_regular_file(model, tmp_path, capsys):
    """issue 23: the rename replaced a FIFO (or a device node) with a regular file. FIFOs only here: a test never
    points a writer at a real device."""
    import os
    import stat
    from archc.cli import main
    from archc.errors import ArchcError
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    with pytest.raises(ArchcError, match=r"is a FIFO \(named pipe\); give the path of a regular file"):
        archc.save_weights(model, fifo)
    assert main(["build", "fastvit_t8", "--save", str(fifo)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"archc: error: --save '{fifo}': is a FIFO (named pipe); give the path of a regular file"
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["fifo.pt"]
