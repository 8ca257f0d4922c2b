"""The ``train`` objective: ImageFolder reading (PIL), the synthetic set, the brief trainer, and its use
in ``archc search`` / ``archc ablate``. Small nets at 32 px, one thread, a few steps: seconds each."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState
from PIL import Image

from archc import build, load_spec
from archc.cli import main as archc_main
from archc.errors import ArchcError, DataError, SearchError, TrainError
from archc.latency import LatencyResult
from archc.search.runner import META_ATTR, SearchConfig, run_search
from archc.train import Score, TrainConfig, TrainScore, open_data, training_spec
from archc.train.folder import image_folder, split_samples
from archc.train.synthetic import SyntheticImages
from archc.train.transforms import IMAGENET_MEAN, IMAGENET_STD, load_image, normalize

ROOT = Path(__file__).resolve().parents[1]
T8 = ROOT / "specs" / "t8.yaml"
#: a 1-block-per-stage, 16-32-wide FastViT-T8 layout: trains 150 steps at 32 px in ~5 s on one thread
SMALL = {"stages[0].depth": 1, "stages[1].depth": 1, "stages[2].depth": 1, "stages[3].depth": 1,
         "stages[0].width": 16, "stages[1].width": 16, "stages[2].width": 32, "stages[3].width": 32,
         "head.expansion": 2}


def small_spec():
    return load_spec(T8, SMALL)


def quick(**kw) -> TrainConfig:
    base = dict(steps=4, batch=8, resolution=32, val_images=40, synthetic_images=200)
    base.update(kw)
    return TrainConfig(**base)


def write_png(path: Path, size=(40, 30), colour=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    """root/b_cat (5 PNGs), root/a_dog (4 PNGs + a JPEG in a sub-folder), a non-image file, a hidden dir."""
    root = tmp_path / "imgs"
    for i in range(5):
        write_png(root / "b_cat" / f"{i}.png", size=(40 + i, 30), colour=(10 * i, 0, 0))
    for i in range(4):
        write_png(root / "a_dog" / f"{i}.png", size=(30, 50), colour=(0, 10 * i, 0))
    (root / "a_dog" / "sub").mkdir()
    Image.new("RGB", (64, 48), (0, 0, 200)).save(root / "a_dog" / "sub" / "x.JPG", format="JPEG")
    (root / "a_dog" / "notes.txt").write_text("not an image")
    (root / ".cache").mkdir()
    return root


# ---- ImageFolder -------------------------------------------------------------------------------------

def test_image_folder_classes_labels_and_seeded_split(folder):
    s = image_folder(folder, 16, val_fraction=0.25, seed=0)
    assert s.classes == ["a_dog", "b_cat"]  # sorted like torchvision; hidden dirs skipped
    every = s.train.samples + s.val.samples
    assert len(every) == 10  # 4 + 1 JPEG (case-insensitive extension, recursive) + 5; notes.txt ignored
    assert {p.name for p, label in every if label == 0} == {"0.png", "1.png", "2.png", "3.png", "x.JPG"}
    assert all(p.parent.name == "b_cat" for p, label in every if label == 1)
    assert not set(s.train.samples) & set(s.val.samples)
    assert sorted(label for _, label in s.val.samples) == [0, 1]  # round(5 * 0.25) = 1 per class
    again = image_folder(folder, 16, val_fraction=0.25, seed=0)
    assert again.val.samples == s.val.samples and again.train.samples == s.train.samples
    others = {tuple(image_folder(folder, 16, val_fraction=0.25, seed=k).val.samples) for k in range(6)}
    assert len(others) > 1, "the split must depend on the seed"


def test_split_keeps_one_image_for_training():
    samples = [(Path(f"{i}.png"), 0) for i in range(2)] + [(Path("solo.png"), 1)]
    train, val = split_samples(samples, 0.9, seed=0)
    assert len([s for s in train if s[1] == 0]) == 1 and len([s for s in val if s[1] == 0]) == 1
    assert train.count((Path("solo.png"), 1)) == 1 and all(s[1] == 0 for s in val)


def test_train_and_val_subfolders_are_used(folder, tmp_path):
    root = tmp_path / "split"
    for split, n in (("train", 3), ("val", 1)):
        for cls in ("x", "y"):
            for i in range(n):
                write_png(root / split / cls / f"{i}.png")
    s = image_folder(root, 16)
    assert s.classes == ["x", "y"] and s.layout == "train/ and val/"
    assert len(s.train) == 6 and len(s.val) == 2
    assert all("/val/" in str(p) for p, _ in s.val.samples)
    write_png(root / "val" / "z" / "0.png")
    with pytest.raises(DataError, match="val/ has classes that train/ lacks: z"):
        image_folder(root, 16)


def test_transform_shapes_centre_crop_and_normalisation(tmp_path, folder):
    img = Image.new("RGB", (100, 50), (255, 0, 0))
    img.paste((0, 0, 255), (50, 0, 100, 50))  # left half red, right half blue
    img.save(tmp_path / "wide.png")
    x = load_image(tmp_path / "wide.png", 16)
    assert x.shape == (3, 16, 16) and x.dtype == torch.uint8
    # the centre 0.875 of the shorter side: a square around x=50, half red, half blue
    assert (x[0, :, :7] > 250).all() and (x[2, :, :7] < 5).all()
    assert (x[2, :, 9:] > 250).all() and (x[0, :, 9:] < 5).all()
    # training crops: seeded, in shape, and a flip is among them
    s = image_folder(folder, 24, val_fraction=0.25, seed=0)
    a, b = s.train[0, 123], s.train[0, 123]
    assert torch.equal(a[0], b[0]) and a[0].shape == (3, 24, 24) and a[1] == 0
    assert s.val[0][0].shape == (3, 24, 24)
    white = normalize(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    expect = torch.tensor([(1 - m) / sd for m, sd in zip(IMAGENET_MEAN, IMAGENET_STD)])
    assert torch.allclose(white[0, :, 0, 0], expect)


def test_folder_errors_name_the_path(tmp_path, folder):
    with pytest.raises(DataError, match="does not exist"):
        image_folder(tmp_path / "missing", 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class directories"):
        image_folder(tmp_path / "empty", 16)
    (folder / "c_empty").mkdir()
    with pytest.raises(DataError, match="no images .* in class directory c_empty"):
        image_folder(folder, 16)
    shutil.rmtree(folder / "c_empty")
    bad = folder / "b_cat" / "9.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG")
    s = image_folder(folder, 16, val_fraction=0.25, seed=0)
    ds = s.train if any(p == bad for p, _ in s.train.samples) else s.val
    i = next(i for i, (p, _) in enumerate(ds.samples) if p == bad)
    with pytest.raises(DataError, match=r"cannot read image .*b_cat/9\.png"):
        ds[i]
    one = tmp_path / "one"
    write_png(one / "only" / "0.png")
    write_png(one / "only" / "1.png")
    with pytest.raises(DataError, match="at least 2"):
        image_folder(one, 16)


# ---- synthetic set -----------------------------------------------------------------------------------

def test_synthetic_set_is_deterministic_balanced_and_seeded():
    a = SyntheticImages(30, num_classes=5, resolution=16, seed=3)
    b = SyntheticImages(30, num_classes=5, resolution=16, seed=3)
    _ = b[7]  # access order does not matter
    for i in (0, 7, 29):
        assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
    assert a[3][0].shape == (3, 16, 16) and a[3][0].dtype == torch.float32
    assert sorted(a[i][1] for i in range(30)) == sorted(list(range(5)) * 6)
    assert not torch.equal(a[0][0], SyntheticImages(30, num_classes=5, resolution=16, seed=4)[0][0])
    assert not torch.equal(a[0][0], SyntheticImages(30, num_classes=5, resolution=16, seed=3, split="val")[0][0])
    assert torch.equal(a[2, 999][0], a[2][0])  # an augmentation seed is accepted and ignored
    with pytest.raises(IndexError):
        a[30]


# ---- the trainer -------------------------------------------------------------------------------------

def test_training_spec_takes_the_datasets_head_and_resolution():
    spec = training_spec(load_spec(T8), num_classes=7, resolution=32)
    assert spec.num_classes == 7 and tuple(spec.input_size) == (32, 32) and spec.name == "fastvit_t8"
    assert build(spec).eval()(torch.randn(1, 3, 32, 32)).shape == (1, 7)


def test_brief_training_learns_the_synthetic_set():
    """150 steps lift a tiny net far above chance (10%): measured 37.5-48.5% over seeds 0-2."""
    r = TrainScore(TrainConfig(steps=150, resolution=32, lr=5e-3, val_images=200, synthetic_images=2000)).result(
        small_spec())
    assert r.top1 >= 25.0, r
    assert r.train_loss < r.first_loss - 0.2, r
    assert r.steps == 150 and r.images == 150 * 32 and r.num_classes == 10


def test_training_is_deterministic_for_a_seed(folder):
    cfg = quick(seed=1)
    a, b = TrainScore(cfg)(small_spec()), TrainScore(cfg)(small_spec())
    timeless = lambda s: {k: v for k, v in s.attrs.items() if k != "train_seconds"}  # noqa: E731
    assert isinstance(a, Score) and float(a) == float(b) and timeless(a) == timeless(b)
    assert a.attrs["train_steps"] == 4 and {"top1", "val_loss", "train_loss"} <= set(a.attrs)
    c = TrainScore(quick(seed=2))(small_spec())
    assert (float(c), c.attrs["train_loss"]) != (float(a), a.attrs["train_loss"])
    # an image folder: DataLoader worker processes change nothing (augmentation seeds come from the trainer)
    f0 = TrainScore(quick(data=str(folder), val_fraction=0.25)).result(small_spec())
    f1 = TrainScore(quick(data=str(folder), val_fraction=0.25, loader_workers=1)).result(small_spec())
    assert (f0.top1, f0.train_loss, f0.val_loss) == (f1.top1, f1.train_loss, f1.val_loss)
    assert f0.num_classes == 2


def test_repeats_score_the_mean_over_consecutive_seeds():
    """--train-repeats N: the mean of N single-seed runs (seed, seed+1, ...), each computed on its own."""
    singles = [TrainScore(quick(seed=s))(small_spec()) for s in (3, 4)]
    mean = TrainScore(quick(seed=3, repeats=2))(small_spec())
    assert float(mean) == pytest.approx((float(singles[0]) + float(singles[1])) / 2)
    assert mean.attrs["top1_seed3"] == singles[0].attrs["top1"] and mean.attrs["top1_seed4"] == singles[1].attrs["top1"]
    assert mean.attrs["top1_std"] == pytest.approx(abs(float(singles[0]) - float(singles[1])) / 2 ** 0.5, abs=1e-3)
    assert "mean over seeds 3..4" in quick(seed=3, repeats=2).describe()
    assert quick(repeats=2).fingerprint()["repeats"] == 2  # part of the study's identity
    with pytest.raises(ArchcError, match="--train-repeats must be at least 1, got 0"):
        TrainConfig(repeats=0).check()


def test_epochs_and_data_description(folder):
    d = open_data(quick(data=str(folder), val_fraction=0.25))
    assert d.classes == ["a_dog", "b_cat"] and len(d.train) == 8 and d.val[0].dtype == torch.uint8
    assert TrainConfig(epochs=2.5, batch=8).total_steps(8) == 3


def nan_build(spec):
    """Build a model whose logits turn NaN: a candidate that diverges."""
    model = build(spec)
    model.register_forward_hook(lambda m, i, out: out * float("nan"))
    return model


def test_non_finite_loss_is_a_clear_error():
    with pytest.raises(TrainError, match="training loss became nan at step 1 of 4"):
        TrainScore(quick(), build_fn=nan_build)(small_spec())


def test_bad_settings_name_their_flag():
    with pytest.raises(ArchcError, match="--train-steps must be at least 1, got 0"):
        TrainScore(TrainConfig(steps=0))
    with pytest.raises(ArchcError, match="--train-batch must be at least 2"):
        TrainConfig(batch=1).check()
    with pytest.raises(ArchcError, match="--train-lr"):
        TrainConfig(lr=float("nan")).check()


# ---- in the search -----------------------------------------------------------------------------------

def tiny_space(tmp_path) -> str:
    text = (ROOT / "search" / "tiny.yaml").read_text().replace("../specs/t8.yaml", str(T8))
    (tmp_path / "tiny.yaml").write_text(text)
    return str(tmp_path / "tiny.yaml")


def fake_latency(spec, target, **kw):
    return LatencyResult(target=target, ms=1.0, kind="measured", batch=1, resolution=spec.input_size,
                         runs=kw.get("runs"))


def test_a_diverging_candidate_fails_and_the_study_goes_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train = quick()

    built = []

    def build_some_nan(spec):  # the second candidate that gets trained diverges
        built.append(spec.name)
        return nan_build(spec) if len(built) == 2 else build(spec)

    cfg = SearchConfig(latency_ms=100, space=tiny_space(tmp_path), target="cpu", objective="train",
                       train={"steps": 4, "batch": 8, "resolution": 32, "val_images": 40, "synthetic_images": 200},
                       trials=4, seed=0, storage=f"sqlite:///{tmp_path}/s.db", lock_dir=str(tmp_path / "locks"))
    run = run_search(cfg, latency_fn=fake_latency, score_fn=TrainScore(train, build_fn=build_some_nan))
    trials = {t.number: t for t in run.study.trials}
    assert run.census.n_finished == 4
    number = {f"tiny_t{t.number:04d}": t.number for t in trials.values()}
    diverged = trials[number[built[1]]]
    assert diverged.state == TrialState.FAIL and "loss became nan" in diverged.user_attrs["error"]
    others = [trials[number[name]] for name in built if name != built[1]]
    assert others, "the study went on to train other candidates"
    for t in others:
        assert t.state == TrialState.COMPLETE
        assert t.values[0] == t.user_attrs["score_top1"] and "score_train_loss" in t.user_attrs
    assert run.study.user_attrs[META_ATTR]["train"]["steps"] == 4


def test_missing_data_stops_the_search_before_any_trial(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = SearchConfig(latency_ms=1, space=tiny_space(tmp_path), objective="train", train={"data": "nowhere"},
                       trials=2, storage=f"sqlite:///{tmp_path}/s.db")
    with pytest.raises(DataError, match="nowhere does not exist"):
        run_search(cfg, latency_fn=fake_latency)
    with pytest.raises(SearchError, match="apply to --objective train only"):
        run_search(SearchConfig(latency_ms=1, space=cfg.space, objective="params", train={"steps": 3}),
                   latency_fn=fake_latency)


def test_cli_search_with_the_train_objective(tmp_path, monkeypatch, capsys):
    """The real command, predicted iphone12pro latency, synthetic data: scores recorded, settings kept."""
    monkeypatch.chdir(tmp_path)
    space = tiny_space(tmp_path)
    args = ["search", "--space", space, "--latency-ms", "1.0", "--objective", "train", "--trials", "3",
            "--seed", "0", "--storage", f"sqlite:///{tmp_path}/s.db", "--out", str(tmp_path / "out"), "--no-macs",
            "--train-steps", "3", "--train-batch", "8", "--train-resolution", "32", "--train-val-images", "40"]
    assert archc_main(args) == 0
    out = capsys.readouterr().out
    assert "objective train: val top-1 % after 3 steps x batch 8 at 32 px on synthetic textures" in out
    assert "score: train (val top-1 %, brief training); latency down" in out
    rows = list(csv.DictReader((tmp_path / "out" / "trials.csv").open()))
    assert len(rows) == 3
    done = [r for r in rows if r["status"] == "complete"]
    assert done, rows
    for r in done:
        assert float(r["score"]) == float(r["score_top1"]) and 0 <= float(r["score"]) <= 100
        assert r["score_train_steps"] == "3"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["objective"] == "train" and summary["study"].endswith("-train")
    # resuming with other training settings would mix scores: refused, one line
    assert archc_main(args[:-6] + ["--train-steps", "5", "--train-batch", "8", "--train-resolution", "32"]) == 2
    assert "was made by a different search (train: study has" in capsys.readouterr().err
    # train options with a proxy objective are a user error
    assert archc_main(["search", "--latency-ms", "1", "--objective", "params", "--data", str(tmp_path)]) == 2
    assert "--data apply to --objective train only" in capsys.readouterr().err


def test_data_implies_the_train_objective():
    """`--data` without `--objective` trains (the signal that ranks the ground truth best); `--supernet` scores
    with the supernet; nothing of either: the default proxy."""
    from argparse import Namespace

    from archc.cli.common import implied_objective
    assert implied_objective(Namespace(objective=None, supernet=None, train_data="fashion-mnist")) == "train"
    assert implied_objective(Namespace(objective=None, supernet="runs/s", train_data=None)) == "supernet"
    assert implied_objective(Namespace(objective="zico", supernet=None, train_data="d")) == "zico"
    assert implied_objective(Namespace(objective=None, supernet=None, train_data=None)) is None


def test_cli_ablate_with_the_train_objective(tmp_path, capsys):
    spec = tmp_path / "small.yaml"
    from archc.spec import save_spec
    save_spec(small_spec(), spec)
    assert archc_main(["ablate", str(spec), "--vary", "stages[3].mixer=repmixer,attention", "--target", "none",
                       "--objective", "train", "--train-steps", "3", "--train-batch", "8",
                       "--train-resolution", "32", "--train-val-images", "40", "--markdown-only"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| variant | params (M) | MACs (G) | score (train) |" and len(lines) == 4
    for line in lines[2:]:
        assert 0 <= float(line.split("|")[-2]) <= 100


def test_a_tiny_validation_split_is_warned_about(capsys):
    """6 held-out images would score 100% or 83%: the objective says the score is too coarse."""
    from archc.train import TrainConfig, TrainScore
    score = TrainScore(TrainConfig(data=None, val_images=6, synthetic_images=64, batch=8, resolution=16))
    score.prepare()
    err = capsys.readouterr().err
    assert "archc: warning: only 6 validation images" in err and "16.7 points of top-1" in err
    TrainScore(TrainConfig(data=None, val_images=200, synthetic_images=64, batch=8, resolution=16)).prepare()
    assert "warning" not in capsys.readouterr().err


def test_a_training_candidate_reports_its_steps():
    """The train objective tells its status callback how far each candidate is (about 20 times)."""
    from archc.train import TrainConfig, TrainScore
    score = TrainScore(TrainConfig(data=None, steps=40, val_images=100, synthetic_images=64, batch=8, resolution=16))
    seen = []
    score.on_status = seen.append
    score(load_spec(str(ROOT / "specs" / "t8.yaml"), {"input_size": 16}))
    assert seen[-1].endswith("step 40/40") and 15 <= len(seen) <= 21 and "training " in seen[0]
