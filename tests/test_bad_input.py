"""Hostile input: resource guards, files, checkpoints and CLI options each end in one clear error, before
anything large is allocated, read or written, and never in a traceback. Tiny specs and the meta device keep
these fast."""
from __future__ import annotations

import dataclasses
import os
import stat
import zipfile
from pathlib import Path

import pytest
import torch

import archc
from archc.cli import main
from archc.errors import ArchcError, SpecError, WeightsError
from archc.guards import check_memory, memory_bytes, param_counts, reset_limits, set_limits

from conftest import SPECS

T8 = str(SPECS / "t8.yaml")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error(capsys, *argv) -> str:
    code, out, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("archc: error: "), (code, out, err)
    assert "Traceback" not in out + err
    return lines[0]


@pytest.fixture(autouse=True)
def _limits():
    reset_limits()
    yield
    reset_limits()


def tiny(**stage) -> dict:
    return {"name": "tiny", "input_size": 32, "stages": [{"depth": 1, "width": 16, "mixer": "repmixer", **stage}]}


# ------------------------------------------------------------------------------------------- guards
def test_parameter_count_is_exact_for_every_part():
    """The guard's count is the built model's count: SE head, conv downsample kernels, stem and branches included."""
    spec = archc.load_spec({**tiny(), "stages": [{"depth": 1, "width": 16, "mixer": "repmixer"},
                                                 {"depth": 1, "width": 40, "mixer": "attention", "head_dim": 8,
                                                  "downsample": {"type": "conv", "kernel": 5}}],
                            "head": {"expansion": 3, "se_ratio": 1.0}})
    counts = param_counts(spec)
    model = archc.build(spec)
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())
    assert counts["head"] == sum(p.numel() for n, p in model.named_parameters() if n.startswith(("final_conv", "head")))
    assert counts["stages[1]"] == sum(p.numel() for p in model.stages[1].parameters())


@pytest.mark.parametrize("data, key", [
    # the cases: the old estimate left the SE head and conv downsample kernels out (69-129 GB)
    ({"name": "x", "input_size": 64, "stages": [{"depth": 1, "width": 8192, "mixer": "repmixer"}],
      "head": {"expansion": 16, "se_ratio": 1.0}}, "head"),
    ({"name": "x", "input_size": 64, "stages": [{"depth": 1, "width": 4096, "mixer": "repmixer"},
                                                {"depth": 1, "width": 8192, "mixer": "repmixer",
                                                 "downsample": {"type": "conv", "kernel": 31}}]}, "stages[1]"),
])
def test_huge_parameter_counts_are_refused_before_building(data, key):
    with pytest.raises(SpecError) as info:
        archc.build(data)
    text = str(info.value)
    assert info.value.path == key and "exceed the limit of 2,000,000,000" in text and "--max-params" in text


@pytest.mark.parametrize("data", [
    {"name": "att", "input_size": 4096, "stages": [{"depth": 1, "width": 64, "mixer": "attention"}]},  # 1M tokens
    {"name": "wide", "input_size": 4096, "stages": [{"depth": 1, "width": 1024, "mixer": "repmixer"}]},
])
def test_activation_memory_is_bounded_before_building(data):
    with pytest.raises(SpecError) as info:
        archc.build(data)
    assert info.value.path == "input_size" and "peak activations" in str(info.value) and "--max-memory" in str(info.value)


def test_attention_counts_its_token_by_token_matrix():
    small = archc.load_spec({"name": "a", "input_size": 256, "stages": [{"depth": 1, "width": 32, "mixer": "attention"}]})
    n = 64 * 64  # tokens after the stride-4 stem
    assert memory_bytes(small)["activations"] >= n * n * 4  # one head, float32


def test_memory_scales_with_batch_and_limit_is_an_option():
    spec = archc.load_spec(tiny())
    one, eight = memory_bytes(spec, 1), memory_bytes(spec, 8)
    assert eight["activations"] == 8 * one["activations"] and one["weights"] == 4 * sum(param_counts(spec).values())
    set_limits(max_memory_gb=one["total"] / 1e9 * 2)
    check_memory(spec, 1)
    with pytest.raises(SpecError, match="at batch 8"):
        check_memory(spec, 8, key="--batch")
    set_limits(max_params=10)
    with pytest.raises(SpecError, match="the limit of 10 "):
        archc.build(spec)


def test_env_limits(monkeypatch):
    spec = archc.load_spec(tiny())
    monkeypatch.setenv("ARCHC_MAX_PARAMS", "100")
    with pytest.raises(SpecError, match="limit of 100 "):
        archc.build(spec)
    monkeypatch.setenv("ARCHC_MAX_PARAMS", "-5")
    with pytest.raises(SpecError, match="not a positive number"):
        archc.build(spec)


def test_build_revalidates_a_replaced_spec():
    spec = archc.load_spec(tiny())
    with pytest.raises(SpecError, match="depth: value -1 out of range"):
        archc.build(dataclasses.replace(spec, stages=(dataclasses.replace(spec.stages[0], depth=-1),)))
    with pytest.raises(SpecError, match="layer_scale_init: expected a finite number"):
        archc.build(dataclasses.replace(spec, layer_scale_init=float("nan")))


@pytest.mark.parametrize("source", [None, 123, b"name: x", "", 1.5])
def test_load_spec_refuses_non_sources(source):
    with pytest.raises(SpecError, match="a spec source is a YAML file path, a mapping or an archc.Spec"):
        archc.load_spec(source)


# -------------------------------------------------------------------------------------------- files
def test_special_files_are_refused_at_once(tmp_path):
    fifo = tmp_path / "spec.fifo"
    os.mkfifo(fifo)
    cases = {"/dev/zero": "is a character device", str(fifo): "is a FIFO", str(tmp_path): "is a directory"}
    for path, words in cases.items():
        with pytest.raises(SpecError, match=words):
            archc.load_spec(path)
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(3 << 30)  # sparse: 3 GB long, nothing written
    with pytest.raises(SpecError, match="over the limit of 1,048,576"):
        archc.load_spec(big)
    child = tmp_path / "child.yaml"
    child.write_text(f"base: {fifo}\nname: c\n")
    with pytest.raises(SpecError, match="is a FIFO"):
        archc.load_spec(child)


def test_names_never_become_paths(capsys, tmp_path):
    from archc.outputs import file_stem
    assert file_stem("/tmp/x") == "tmp_x" and file_stem("../../x") == "x" and file_stem("..") == "model"
    line = one_error(capsys, "export", T8, "--name", "../../x", "--out", str(tmp_path / "out"), "--format", "onnx")
    assert "--name '../../x': must be a plain file name" in line
    with pytest.raises(ArchcError, match="not a path"):
        archc.export.export_model(torch.nn.Identity(), torch.zeros(1, 3, 8, 8), ["onnx"], tmp_path, name="../x")
    assert not (tmp_path.parent / "x.onnx").exists()


def test_output_paths_are_checked_before_the_work(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = one_error(capsys, "build", T8, "--save", str(blocker / "sub" / "m.pt"))
    assert "--save" in line and "cannot write there" in line
    line = one_error(capsys, "build", T8, "--save", str(tmp_path))
    assert "is a folder" in line
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        assert "cannot write there" in one_error(capsys, "schema", "-o", str(ro / "s.json"))
    finally:
        ro.chmod(stat.S_IRWXU)


# ---------------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return archc.build(tiny()).eval()


def _corrupt(sd: dict, how: str) -> dict:
    sd = {k: v.clone() for k, v in sd.items()}
    conv = next(k for k, v in sd.items() if v.dim() == 4)
    var = next(k for k in sd if k.endswith("running_var"))
    late = [k for k, v in sd.items() if v.is_floating_point()][-1]  # late: nothing before it may be copied
    if how == "nan":
        sd[late] = sd[late].clone().fill_(float("nan"))
    elif how == "inf":
        sd[conv].view(-1)[0] = float("inf")
    elif how == "negative_var":
        sd[var] = -sd[var].abs() - 1
    elif how == "integer":
        sd[conv] = sd[conv].to(torch.int32)
    elif how == "complex":
        sd[conv] = sd[conv].to(torch.complex64)
    elif how == "sparse":
        sd[late] = sd[late].to_sparse()
    elif how == "meta":
        sd[late] = sd[late].to("meta")
    return sd


@pytest.mark.parametrize("how, words", [
    ("nan", "non-finite"), ("inf", "non-finite"), ("negative_var", "negative variances"), ("integer", "dtype int32"),
    ("complex", "dtype complex64"), ("sparse", "sparse_coo tensor"), ("meta", "meta tensor"),
])
def test_unsound_checkpoints_are_refused_and_the_model_untouched(tiny_model, tmp_path, how, words):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    bad = _corrupt(tiny_model.state_dict(), how)
    for source in (bad, tmp_path / "bad.pt"):
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(WeightsError, match=words):
            archc.load_weights(tiny_model, source)
        assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())


def test_archive_crc_size_and_version(tiny_model, tmp_path):
    good = tmp_path / "good.pt"
    archc.save_weights(tiny_model, good)
    assert archc.load_weights(tiny_model, good) == "archc"
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:  # flip a byte inside the largest stored tensor
        info = max(zf.infolist(), key=lambda i: i.file_size)
    data[info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.file_size // 2] ^= 0xFF
    (tmp_path / "crc.pt").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="CRC check failed"):
        archc.load_weights(tiny_model, tmp_path / "crc.pt")
    with zipfile.ZipFile(tmp_path / "bomb.pt", "w", zipfile.ZIP_DEFLATED) as zf:  # ~200 kB on disk
        with zf.open("bomb/data/0", "w", force_zip64=True) as f:
            for _ in range(200):
                f.write(bytes(1 << 20))
    with pytest.raises(WeightsError, match="unpacks to 209,715,200 bytes"):
        archc.load_weights(tiny_model, tmp_path / "bomb.pt")
    payload = torch.load(good, weights_only=True)
    payload["version"] = 99
    torch.save(payload, tmp_path / "v.pt")
    with pytest.raises(WeightsError, match="version 99 is not one this archc reads"):
        archc.load_weights(tiny_model, tmp_path / "v.pt")


def test_control_characters_in_keys_are_escaped(tiny_model):
    sd = dict(tiny_model.state_dict())
    sd["evil\x1b[2J\nkey"] = torch.zeros(1)
    with pytest.raises(WeightsError) as info:
        archc.load_weights(tiny_model, sd)
    assert "\x1b" not in str(info.value) and "\n" not in str(info.value) and "evil\\x1b[2J\\nkey" in str(info.value)


# -------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize("argv, words", [
    (["build", T8, "--input-size", "0"], "input_size: value 0 out of range; valid: 8 to 4096"),
    (["bench", T8, "--target", "iphone12pro", "--resolution", "7"], "--resolution 7: value 7 out of range"),
    (["bench", T8, "--target", "iphone12pro", "--resolutions", "224,100000"], "--resolutions 100000: value 100000 out"),
    (["bench", T8, "--batch", "0"], "--batch must be >= 1, got 0"),
    (["bench", T8, "--batch", "-3"], "--batch must be >= 1, got -3"),
    (["bench", T8, "--threads", "100000"], "--threads 100000: must be 1 to"),
    (["export", T8, "--batch", "100000", "--format", "onnx"], "--batch: needs about"),
    (["--max-memory", "0.001", "build", T8], "over the limit of 1 MB"),
    (["--max-params", "nan", "build", T8], "--max-params / ARCHC_MAX_PARAMS: 'nan' is not a positive number"),
])
def test_bad_options_are_one_line(capsys, tmp_path, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    assert words in one_error(capsys, *argv)


def test_markup_in_names_prints_as_it_is(capsys, tmp_path):
    spec = tmp_path / "m.yaml"
    spec.write_text("name: '[/x] [bold]n'\ninput_size: 32\nstages:\n  - {depth: 1, width: 16, mixer: repmixer}\n")
    code, out, err = run(capsys, "build", str(spec))
    assert code == 0 and "[/x] [bold]n" in out, err


def test_plot_into_a_folder_says_what_it_wrote(capsys, tmp_path):
    code, out, err = run(capsys, "bench", T8, "--target", "iphone12pro", "--resolutions", "64,96", "--plot", str(tmp_path))
    assert code == 0, err
    written = tmp_path / "bench-iphone12pro.png"
    assert written.stat().st_size > 1000 and f"plot written to {written}" in out


def test_ablate_reference_without_name_column(capsys, tmp_path):
    ref = tmp_path / "ref.csv"
    ref.write_text("model,top1\nt8,75.6\n")
    line = one_error(capsys, "ablate", T8, "--set", "input_size=32", "--target", "none", "--objective", "none",
                     "--reference", str(ref))
    assert "no 'name' column" in line and "'model', 'top1'" in line


def test_printed_lines_are_never_wrapped(capsys):
    """A long path once pushed 'N of N trials finished' onto a second line (test_search_cli's flake)."""
    from archc.cli.common import console
    line = "study s in sqlite:////" + "long/" * 40 + "runs.db: 6 of 6 trials finished (12 s this run)"
    console().print(line)
    assert capsys.readouterr().out == line + "\n"


# ---------------------------------------------------------------------------------- round three (issue 23)
def test_api_inputs_of_the_wrong_kind_are_one_clear_error():
    import archc
    deep = {}
    cur = deep
    for _ in range(5000):
        cur["x"] = {}
        cur = cur["x"]
    cases = [(lambda: archc.load_spec("a" * 300), "File name too long|name too long"),
             (lambda: archc.load_spec(deep), "nested deeper than 32 levels"),
             (lambda: archc.load_spec("fastvit_t8", {"stages[0].depth": deep}), "nested deeper"),
             (lambda: archc.create_model("fastvit_t8", overrides=5), "overrides are a list"),
             (lambda: archc.create_model("fastvit_t8", deploy="yes"), "takes True or False"),
             (lambda: archc.create_model("fastvit_t8", num_classes="ten"), "takes an integer"),
             (lambda: archc.create_model("fastvit_t8", weights=3.5), "checkpoint path or a state dict")]
    for call, message in cases:
        with pytest.raises(archc.ArchcError, match=message):
            call()


def test_count_like_training_settings_are_bounded_by_the_machine():
    import os
    from archc.train import TrainConfig
    cores = os.cpu_count() or 1
    for kw, message in ((dict(repeats=100_000), "--train-repeats must be at most 100"),
                        (dict(loader_workers=1000), f"--train-workers must be 0 to {cores}"),
                        (dict(threads=1000), f"--train-threads must be 1 to {cores}"),
                        (dict(batch=10 ** 7), "--train-batch must be at most"),
                        (dict(epochs=1e9), "--train-epochs must be at most")):
        with pytest.raises(ArchcError, match=message):
            TrainConfig(**kw).check()


def test_the_memory_guard_covers_training_batches():
    import archc
    from archc.train.loop import check_training_memory
    spec = archc.load_spec("fastvit_t8")
    with pytest.raises(archc.SpecError, match="--train-batch: needs about"):
        check_training_memory(spec, 60_000)


def test_image_folders_follow_no_symlink_loop_count_each_image_once_and_skip_fifos(tmp_path):
    import os
    from archc.train.folder import scan
    from PIL import Image
    root = tmp_path / "data"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / c / f"{i}.png")
    (root / "a" / "loop").symlink_to(root / "a")            # a folder that contains itself
    (root / "a" / "again").symlink_to(root / "a")
    (root / "b" / "copy.png").symlink_to(root / "b" / "0.png")  # the same image under a second name
    os.mkfifo(root / "b" / "pipe.png")                        # would block forever if opened
    samples = scan(root, ["a", "b"])
    assert len(samples) == 6


@pytest.mark.parametrize("raw", ["1e23", "100000000000000000000000", "0", "-5", "big"])
def test_an_absurd_spec_size_limit_is_one_clear_line(tmp_path, monkeypatch, capsys, raw):
    from archc.cli import main
    monkeypatch.setenv("ARCHC_MAX_SPEC_BYTES", raw)
    assert main(["build", "fastvit_t8"]) == 2
    err = capsys.readouterr().err
    assert "ARCHC_MAX_SPEC_BYTES" in err and "1 to 1,073,741,824" in err and "Traceback" not in err
