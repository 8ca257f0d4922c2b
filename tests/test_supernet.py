"""The weight-sharing supernet: slicing rules, subnets computing with the shared weights, extraction that loads
strictly and reproduces the supernet's logits, resume after a stop, and the CLI's refusals."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import archc
from archc.space import load_space
from archc.supernet.sampling import sandwich
from archc.supernet.shared import SupernetError, take
from archc.supernet.train import FILE, SupernetConfig, read_state, train_supernet

SPACE = Path(__file__).parent / "data" / "tiny_supernet_space.yaml"


def config(**kw) -> SupernetConfig:
    base = dict(space=str(SPACE), data=None, epochs=1.0, batch=8, resolution=16, val_images=64, seed=3,
                random_subnets=1)
    base.update(kw)
    return SupernetConfig(**base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A supernet of the tiny space after 4 steps on the synthetic set."""
    out = tmp_path_factory.mktemp("supernet")
    result = train_supernet(config(), out, stop_after=4, save_every_s=0)
    return out, result


def test_take_slices_channels_kernels_and_qkv_chunks():
    full = torch.arange(6 * 4 * 5 * 5, dtype=torch.float32).reshape(6, 4, 5, 5)
    part = take(full, (3, 2, 3, 3), "conv.weight")
    assert torch.equal(part, full[:3, :2, 1:4, 1:4])            # leading channels, centre of the kernel
    qkv = torch.arange(3 * 4 * 4, dtype=torch.float32).reshape(12, 4)
    sub = take(qkv, (6, 2), "token_mixer.qkv.weight")           # the first 2 rows of each of q, k, v
    assert torch.equal(sub, torch.cat([qkv[0:2, :2], qkv[4:6, :2], qkv[8:10, :2]]))
    with pytest.raises(SupernetError, match="needs 7"):
        take(full, (7, 4, 5, 5), "conv.weight")


def test_sandwich_is_seeded_and_ordered():
    space = load_space(SPACE)
    a = [(k, archc.spec.arch_key(s)) for k, s in sandwich(space, 0, 5, 2)]
    b = [(k, archc.spec.arch_key(s)) for k, s in sandwich(space, 0, 5, 2)]
    assert a == b and [k for k, _ in a] == ["largest", "smallest", "random", "random"]
    largest, smallest = sandwich(space, 0, 5, 0)
    assert [s.width for s in largest[1].stages] == [16, 32, 64, 128]
    assert [s.depth for s in smallest[1].stages] == [1, 1, 1, 1]


def test_training_moves_shared_weights_and_saves(trained):
    out, result = trained
    state = read_state(out / FILE)
    assert state["step"] == result.steps_done == 4
    assert result.keys == len(state["shapes"]) and result.shared_params > 0
    assert all(torch.isfinite(v).all() for v in state["weights"].values())


def test_subnet_forward_equals_its_extracted_model(trained, tmp_path):
    """The supernet's computation for a subnet and the extracted checkpoint's model agree exactly (train mode:
    batch statistics, so the recalibrated buffers play no part) and the checkpoint loads strictly."""
    from archc.supernet.score import SupernetScore, extract
    out, _ = trained
    scorer = SupernetScore(out, calib_images=16, val_images=32)
    space = load_space(SPACE)
    for kind, spec in sandwich(space, 11, 0, 3):
        spec = scorer.fit(spec)
        ckpt = tmp_path / f"{kind}.pt"
        extract(out, spec, ckpt, calib_images=16)
        model = archc.build(spec)
        archc.weights.load_weights(model, ckpt, strict=True)
        x = torch.randn(4, spec.in_chans, 16, 16)
        model.train()
        scorer.net.train_mode(spec)
        with torch.no_grad():
            want = scorer.net.forward(spec, x)
            got = model(x)
        assert torch.equal(want, got), kind
        # and in eval mode the extracted model is the scorer's model, recalibrated statistics included
        ref = scorer.model(spec)
        archc.weights.load_weights(model, ckpt, strict=True)   # the train-mode pass above moved its statistics
        model.eval()
        with torch.no_grad():
            assert torch.equal(ref(x), model(x))


def test_score_is_cached_per_architecture(trained):
    from archc.supernet.score import SupernetScore
    out, _ = trained
    scorer = SupernetScore(out, calib_images=16, val_images=32)
    spec = scorer.fit(sandwich(load_space(SPACE), 1, 0, 0)[0][1])
    first = scorer(spec)
    assert 0 <= float(first) <= 100 and scorer(spec) is first
    assert first.attrs["supernet_id"] == read_state(out / FILE)["id"]


def test_resume_is_the_same_run(tmp_path):
    """2 + 2 steps with a stop between them give the weights of 4 steps in one go."""
    a, b = tmp_path / "a", tmp_path / "b"
    train_supernet(config(), a, stop_after=4, save_every_s=0)
    train_supernet(config(), b, stop_after=2, save_every_s=0)
    r = train_supernet(config(), b, stop_after=2, save_every_s=0)
    assert r.resumed_from == 2 and r.steps_done == 4
    wa, wb = read_state(a / FILE)["weights"], read_state(b / FILE)["weights"]
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], rtol=0, atol=1e-6), k


def test_other_settings_are_refused(trained):
    out, _ = trained
    with pytest.raises(SupernetError, match="random_subnets: 1 -> 2"):
        train_supernet(config(random_subnets=2), out, stop_after=1)


def test_extracted_weights_fine_tune_with_train_init(trained, tmp_path):
    from archc.supernet.score import extract
    from archc.train import TrainConfig
    from archc.train.fit import fit
    from archc.train.score import open_data
    out, _ = trained
    spec = sandwich(load_space(SPACE), 2, 0, 0)[1][1]
    cfg = TrainConfig(data=None, batch=8, resolution=16, val_images=32, synthetic_images=64).check()
    data = open_data(cfg)
    spec = archc.train.loop.training_spec(spec, len(data.classes), 16)
    ckpt = tmp_path / "init.pt"
    extract(out, spec, ckpt, calib_images=16)
    r = fit(spec, data, cfg, epochs=1, out=tmp_path / "ft", init=ckpt)
    assert r.epochs == 1 and r.val_top1 >= 0


def test_cli_errors_are_one_line(tmp_path):
    missing = subprocess.run([sys.executable, "-m", "archc", "supernet", "score", str(tmp_path), "fastvit_t8"],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no supernet here" in missing.stderr and "Traceback" not in missing.stderr
    bad = subprocess.run([sys.executable, "-m", "archc", "supernet", "train", str(SPACE), "--data", "synthetic",
                          "--out", str(tmp_path / "x"), "--random-subnets", "99"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--random-subnets 99" in bad.stderr and "Traceback" not in bad.stderr


def test_search_scores_with_the_supernet_and_is_bound_to_it(trained, tmp_path):
    """`archc search --objective supernet`: every finished trial is scored by this supernet (its id stored per
    trial); resuming the study with another supernet, or searching another space with it, is refused."""
    import shutil

    from archc.errors import SearchError
    from archc.latency import LatencyResult
    from archc.search.runner import SearchConfig, run_search

    def fake_latency(spec, target, **kw):
        return LatencyResult(target=target, ms=1.0, kind="measured", batch=1, resolution=spec.input_size)

    out, _ = trained
    cfg = SearchConfig(latency_ms=5.0, space=str(SPACE), target="cpu", supernet=str(out), objective="supernet",
                       trials=3, seed=0, heartbeat=1, storage=f"sqlite:///{tmp_path}/study.db",
                       lock_dir=str(tmp_path / "locks"), out=str(tmp_path / "out"))
    run = run_search(cfg, latency_fn=fake_latency)
    done = [t for t in run.study.trials if t.state.name == "COMPLETE"]
    sid = read_state(out / FILE)["id"]
    assert len(done) == 3 and {t.user_attrs["score_supernet_id"] for t in done} == {sid}
    assert all(0 <= t.values[0] <= 100 for t in done)

    other = tmp_path / "other"
    shutil.copytree(out, other)
    train_supernet(config(), other, stop_after=1, save_every_s=0)  # one more step: another supernet
    again = SearchConfig(**{**cfg.__dict__, "supernet": str(other), "trials": 4})
    with pytest.raises(SearchError, match="made by a different search"):
        run_search(again, latency_fn=fake_latency)
    with pytest.raises(SearchError, match="was trained on the space 'tiny_supernet'"):
        run_search(SearchConfig(**{**cfg.__dict__, "space": "tiny"}), latency_fn=fake_latency)
