"""``archc train``: the IDX reader (and its errors), honest splits, resumable training that loses nothing and
resumes to the same weights, checkpoints the rest of archc loads, and the deploy graph's agreement."""
from __future__ import annotations

import copy
import dataclasses
import gzip
import json
import os
from pathlib import Path

import pytest
import torch

import archc
from archc.cli import main
from archc.errors import DataError, TrainError
from archc.train import TrainConfig
from archc.train.fit import fit
from archc.train.idx import read_split
from archc.train.loop import evaluate, prepare
from archc.train.score import open_data

SLICE = Path(__file__).resolve().parent / "data" / "fashion-mnist-slice"
TINY = {"name": "tiny", "num_classes": 10, "input_size": 32, "stem": {"type": "mobileone", "kernel": 3},
        "stage_defaults": {"mlp_ratio": 2, "ffn": "convffn", "ffn_kernel": 3,
                           "downsample": {"type": "replk", "kernel": 5, "small_kernel": 3, "stride": 2}},
        "stages": [{"depth": 1, "width": 16, "mixer": "repmixer"},
                   {"depth": 1, "width": 32, "mixer": "attention", "head_dim": 16}],
        "head": {"type": "mobileone_se", "expansion": 2, "se_ratio": 0.0625}}


def cfg(**kw) -> TrainConfig:
    base = dict(data=str(SLICE), batch=50, resolution=32, val_images=100, threads=1, lr=3e-3)
    return TrainConfig(**{**base, **kw}).check()


@pytest.fixture(scope="module")
def data():
    return open_data(cfg())


def write_idx(path: Path, t: torch.Tensor, magic: bytes = None, compress: bool = True) -> None:
    head = magic or bytes([0, 0, 0x08, t.dim()])
    head += b"".join(int(n).to_bytes(4, "big") for n in t.shape)
    raw = head + t.to(torch.uint8).contiguous().numpy().tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def fake_set(folder: Path, n_img: int = 20, n_lab: int = 20, **kw) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, stem in (("train", "train"), ("test", "t10k")):
        write_idx(folder / f"{stem}-images-idx3-ubyte.gz", torch.zeros(n_img, 28, 28), **kw)
        write_idx(folder / f"{stem}-labels-idx1-ubyte.gz", torch.arange(n_lab) % 10)
    return folder


def test_the_slice_splits_honestly(data):
    assert len(data.classes) == 10 and data.in_chans == 1
    assert len(data.train) == 500 and len(data.val[1]) == 100 and len(data.test[1]) == 200
    assert torch.bincount(data.val[1]).tolist() == [10] * 10  # class-balanced hold-out
    images, _ = read_split(SLICE, "train")
    # the validation images are training-split images that the trainer never sees
    train_rows = {bytes(x.numpy()) for x in data.train.images}
    assert not any(bytes(x.numpy()) in train_rows for x in data.val[0])
    # the same hold-out for every training seed: seed replicates are scored on the same images
    assert torch.equal(open_data(cfg(seed=1)).val[0], data.val[0])
    x, y = data.train[0, 123]
    assert x.shape == (1, 32, 32) and x.dtype == torch.uint8 and torch.equal(data.train[0, 123][0], x)


@pytest.mark.parametrize("damage, message", [
    ("missing", "missing t10k-labels-idx1-ubyte.gz"),
    ("magic", "magic number 0x00000903 is not an IDX file of uint8 with 3 dimensions"),
    ("truncated", "damaged or truncated"),
    ("short", "holds 7840; it is truncated"),
    ("counts", "holds 20 images but train-labels-idx1-ubyte.gz 19 labels"),
    ("fifo", "not a regular file"),
])
def test_bad_idx_data_is_one_clear_line(tmp_path, damage, message):
    folder = fake_set(tmp_path / "set", n_lab=19 if damage == "counts" else 20,
                      magic=bytes([0, 0, 0x09, 3]) if damage == "magic" else None)
    img = folder / "train-images-idx3-ubyte.gz"
    if damage == "missing":
        (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    elif damage == "truncated":
        img.write_bytes(img.read_bytes()[:-40])
    elif damage == "short":
        raw = gzip.decompress(img.read_bytes())
        img.write_bytes(gzip.compress(raw[:16 + 7840]))
    elif damage == "fifo":
        img.unlink()
        os.mkfifo(img)
    with pytest.raises(DataError, match=message):
        open_data(cfg(data=str(folder), val_images=10))


def test_fit_checkpoints_load_everywhere_and_the_deploy_graph_agrees(tmp_path, data):
    spec = archc.load_spec(TINY)
    res = fit(spec, data, cfg(), epochs=2, out=tmp_path / "run")
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"last.pt", "best.pt", "state.pt", "summary.json", "spec.yaml"} <= files and not any(f.endswith(".tmp") for f in files)
    assert [h.epoch for h in res.history] == [1, 2] and res.history[-1].train_loss < 2.3  # it learned something
    assert res.val_top1 == max(h.val_top1 for h in res.history) and res.test_top1 is not None
    model = archc.create_model(res.spec, weights=tmp_path / "run" / "best.pt").eval()
    assert model.spec.in_chans == 1
    top1, _ = evaluate(model, data.val[0], data.val[1], data.train, 100)
    assert top1 == res.val_top1
    assert abs(res.val_top1_deploy - res.val_top1) <= 1.0  # at most one of 100 images (a float32 near-tie)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["val_top1"] == res.val_top1 and summary["spec"]["in_chans"] == 1


def test_a_stopped_run_resumes_to_the_same_weights(tmp_path, data):
    spec = archc.load_spec(TINY)
    whole = fit(spec, data, cfg(), epochs=3, out=tmp_path / "whole")

    class Stop(Exception):
        pass

    def stop_after_2(event):
        if "record" in event and event["epoch"] == 2:
            raise Stop  # after epoch 2's files are written, as a kill -9 between epochs would leave them

    with pytest.raises(Stop):
        fit(spec, data, cfg(), epochs=3, out=tmp_path / "cut", progress=stop_after_2)
    resumed = fit(spec, data, cfg(), epochs=3, out=tmp_path / "cut")
    assert resumed.resumed_from == 2 and [h.epoch for h in resumed.history] == [1, 2, 3]
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.val_top1 == whole.val_top1 and resumed.test_top1 == whole.test_top1
    with pytest.raises(TrainError, match=r"another training run \(.*lr: 0.003 -> 0.001"):
        fit(spec, data, cfg(lr=1e-3), epochs=3, out=tmp_path / "cut")


def test_ema_weights_are_the_ones_scored_and_saved(tmp_path, data):
    spec = archc.load_spec(TINY)
    res = fit(spec, data, cfg(), epochs=1, out=tmp_path / "ema", ema=0.9)
    state = torch.load(tmp_path / "ema" / "state.pt", weights_only=True)
    saved = torch.load(tmp_path / "ema" / "last.pt", weights_only=True)["state_dict"]
    raw = state["model"]
    differs = [k for k in saved if saved[k].is_floating_point() and not torch.equal(saved[k], raw[k])]
    assert differs  # the checkpoint holds the average, not the last step's weights
    assert res.val_top1 == res.history[0].val_top1


def test_cli_train_json_and_bad_flags(tmp_path, capsys):
    spec_path = tmp_path / "tiny.yaml"
    archc.save_spec(archc.load_spec(TINY), spec_path)
    out = tmp_path / "cli"
    argv = ["train", str(spec_path), "--data", str(SLICE), "--epochs", "1", "--batch", "50", "--val-images", "100",
            "--threads", "1", "--out", str(out), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] == 1 and summary["test_top1"] is not None and (out / "best.pt").exists()
    trained = str(out / "spec.yaml")  # the spec as trained: 1 channel, 10 classes, 32 px
    assert main(["bench", trained, "--weights", str(out / "best.pt"), "--target", "cpu", "--runs", "1",
                 "--warmup", "0", "--json"]) == 0
    assert main(["export", trained, "--weights", str(out / "best.pt"), "--format", "onnx", "--out",
                 str(tmp_path / "export")]) == 0
    assert any(p.suffix == ".onnx" for p in (tmp_path / "export").iterdir())
    capsys.readouterr()
    for bad, message in ((["--threads", "1000"], "--threads 1000: must be 1 to"),
                         (["--epochs", "0"], "--epochs 0: must be 1 to"),
                         (["--ema", "1.5"], "--ema 1.5: must be a decay"),
                         (["--data", str(tmp_path / "nowhere")], "does not exist"),
                         (["--device", "tpu"], "--device tpu: valid: cpu, cuda, cuda:N")) + \
            ((((["--device", "cuda"], "has no CUDA device")),) if not torch.cuda.is_available() else ()):
        args = argv[:2] + ["--data", str(SLICE), "--out", str(tmp_path / "bad")] + bad
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_torchrun_two_cpu_processes_match_one_within_noise(tmp_path):
    """``torchrun --nproc_per_node 2 -m archc train``: DistributedDataParallel over gloo, each process half of
    every global batch; the losses match one process's within noise (BatchNorm statistics are per process)."""
    import shutil
    import subprocess
    import sys
    spec_path = tmp_path / "tiny.yaml"
    archc.save_spec(archc.load_spec(TINY), spec_path)
    common = ["train", str(spec_path), "--data", str(SLICE), "--epochs", "2", "--batch", "50", "--val-images", "100",
              "--threads", "1", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ARCHC_PROGRESS": "off"}
    torchrun = shutil.which("torchrun") or pytest.skip("torchrun is not on PATH")
    two = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "archc", *common,
                          "--out", str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    one = subprocess.run([sys.executable, "-m", "archc", *common, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    a, b = json.loads(one.stdout), json.loads(two.stdout)
    assert a["processes"] == 1 and b["processes"] == 2
    for ha, hb in zip(a["history"], b["history"]):
        assert abs(ha["train_loss"] - hb["train_loss"]) < 0.03
    assert (tmp_path / "two" / "best.pt").exists() and not (tmp_path / "two" / ".best.pt.tmp").exists()


def test_train_checks_its_output_folder_and_environment_before_any_work(tmp_path, capsys, monkeypatch, full_disk):
    """issue 23: a full disk was found after the first epoch; WORLD_SIZE=abc and --batch 65536 were tracebacks or
    came after the data was opened."""
    import archc.train.score as score
    argv = ["train", "fastvit_t8", "--data", "synthetic", "--epochs", "1", "--out", str(tmp_path / "out")]
    monkeypatch.setattr(score, "open_data", lambda cfg: pytest.fail("the data was opened"))
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"archc: error: --out '{tmp_path / 'out'}': cannot write there: No space")
    monkeypatch.setenv("WORLD_SIZE", "abc")
    assert main(argv) == 2
    assert capsys.readouterr().err == ("archc: error: environment variable WORLD_SIZE='abc': must be a whole number "
                                       ">= 0 (torchrun sets it; unset it to train in one process)\n")
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.undo()  # a writable disk again; the data must still not be opened
    monkeypatch.setattr(score, "open_data", lambda cfg: pytest.fail("the data was opened"))
    assert main(argv + ["--batch", "65536", "--resolution", "224"]) == 2
    assert "--batch: needs about" in capsys.readouterr().err
