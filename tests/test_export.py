"""ganctl export: TorchScript and ONNX files compute G's outputs, at any batch size, and bad input is one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ganctl.cli import main
from ganctl.commands import export
from ganctl.errors import CheckpointError, ConfigError
from ganctl.generation import generate, seeded
from ganctl.training.checkpoint import load_generator

from conftest import run_cli

FIXTURES = Path(__file__).parent / "fixtures"
# torch 2.14 calls TorchScript deprecated on every torch.jit.load; the README says so once.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")

# The generators every export is checked on: a name and the overrides of a 4-step tiny run
# (conftest.tiny_run). A new architecture is one more line.
MODELS = {
    "mlp": ("+experiment=mnist_bce", "model.g_hidden=[32]", "model.d_hidden=[32]"),
    "dcgan": ("+experiment=mnist_best", "model.width=8"),
    "conditional": ("+experiment=mnist_best", "model.width=8", "model.conditional=true"),
    # d_norm=none, the run the label check below was set on: with D's batch norm (fastgan.yaml's)
    # the 4 steps moved classes 1 and 8 apart by only 2e-4, under the check's 1e-3.
    "fastgan": (
        "+experiment=mnist_best",
        "model=fastgan",
        "model.width=2",
        "model.conditional=true",
        "model.d_norm=none",
    ),
}
# ONNX Runtime's float32 kernels sum in another order than PyTorch's (fused convolutions, other
# GEMM blocking): measured <= 2e-6 on these [-1, 1] outputs (TorchScript runs PyTorch's own
# kernels: 0). 1e-5 leaves 5x room, while a wrong weight, a frozen batch size or a label baked
# into the graph moves outputs by > 1e-2.
ATOL = 1e-5


def load_torchscript(path: Path):
    meta = {export.METADATA: ""}
    module = torch.jit.load(str(path), _extra_files=meta)
    return (lambda *inputs: module(*inputs).detach().numpy()), json.loads(meta[export.METADATA])


def load_onnx(path: Path):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    run = lambda *inputs: session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0]  # noqa: E731
    return run, json.loads(session.get_modelmeta().custom_metadata_map["ganctl"])


LOADERS = {"torchscript": load_torchscript, "onnx": load_onnx}


@pytest.mark.parametrize("fmt", export.FORMATS)
@pytest.mark.parametrize("name", MODELS)
def test_exported_generator_equals_pytorch_at_any_batch_size(tiny_run, tmp_path, name, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    run_dir = tiny_run(*MODELS[name])
    out = tmp_path / f"G.{fmt}"
    export.main([str(run_dir), "--format", fmt, "-o", str(out)])
    model = load_generator(run_dir, torch.device("cpu"))  # G_ema where the run keeps one (mnist_best)
    run, meta = LOADERS[fmt](out)
    assert (meta["z_dim"], meta["output_shape"], meta["classes"], meta["ema"]) == (
        model.cfg.model.z_dim,
        [1, 28, 28],
        model.classes,
        name != "mlp",  # mnist_bce keeps no EMA
    )
    for n in (1, 5):  # the trace ran at N = 3: both sizes prove the batch axis is free
        z = seeded(n, model.cfg.model, seed=11)  # not the export's own check latents
        labels = None if model.classes is None else torch.tensor([7, 2, 9, 0, 4][:n])
        want = generate(model.G, z, labels=labels).numpy()
        got = run(z, *([] if labels is None else [labels]))
        assert got.shape == (n, 1, 28, 28)
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    if model.classes is not None:  # the label is an input, not a constant of the trace
        z = seeded(2, model.cfg.model, seed=3)
        a, b = run(z, torch.tensor([1, 1])), run(z, torch.tensor([8, 8]))
        assert np.abs(a - b).max() > 1e-3


def test_raw_generator_and_points_export(tmp_path):
    """--no-ema exports G; a 1-D model with uniform latents (setup 002's) gives N x 1 points."""
    ckpt = FIXTURES / "v1_gaussian1d.pt"
    out = tmp_path / "g.pt"
    export.main([str(ckpt), "--format", "torchscript", "-o", str(out), "--no-ema"])
    run, meta = load_torchscript(out)
    assert (meta["kind"], meta["latent"], meta["ema"], meta["output_range"]) == ("points1d", "uniform", False, None)
    model = load_generator(ckpt, torch.device("cpu"), use_ema=False)
    z = seeded(7, model.cfg.model, seed=1)
    assert run(z).shape == (7, 1)
    np.testing.assert_allclose(run(z), generate(model.G, z).numpy(), rtol=0, atol=ATOL)


@pytest.mark.slow  # a Python started in a subprocess: 3-6 s of imports on the 2-core machine
def test_cli_prints_the_one_line_summary_and_bad_input_exits_2(tiny_run, tmp_path):
    pytest.importorskip("onnxruntime")
    run_dir = tiny_run(*MODELS["conditional"])
    out = tmp_path / "G.onnx"
    done = run_cli("export", str(run_dir), "--format", "onnx", "-o", str(out))
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert "\n" not in line and line.startswith(f"ganctl: wrote {out} (onnx; ")
    assert "z: N x 64 float32 (N(0, I)), label: N int64 in 0..9 -> x: N x 1 x 28 x 28 in [-1, 1]" in line
    diff = float(line.split("max |diff| vs PyTorch ")[1].split()[0])
    assert diff <= ATOL


def one_line_exit_2(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main(["export", *argv])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err and err.startswith("ganctl: error: "), err
    return err


def test_bad_format_missing_run_existing_output_and_missing_extra_are_one_line(tiny_run, tmp_path, capsys, monkeypatch):
    run_dir = str(tiny_run(*MODELS["dcgan"]))
    err = one_line_exit_2(capsys, run_dir, "--format", "tflite", "-o", str(tmp_path / "G.tflite"))
    assert "ganctl export: argument --format: invalid choice: 'tflite'" in err
    err = one_line_exit_2(capsys, str(tmp_path / "no_run"), "--format", "onnx", "-o", str(tmp_path / "x.onnx"))
    assert err == f"ganctl: error: checkpoint {tmp_path / 'no_run'} does not exist; pass a .pt file or a run folder"
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "G.pt").write_bytes(b"keep")
    with pytest.raises(ConfigError, match="exists; pass --force to overwrite it"):
        export.main([run_dir, "--format", "torchscript", "-o", str(tmp_path / "G.pt")])
    assert (tmp_path / "G.pt").read_bytes() == b"keep"
    with pytest.raises(CheckpointError, match="is not a readable ganctl checkpoint"):
        export.main([str(tmp_path / "G.pt"), "--format", "torchscript", "-o", str(tmp_path / "H.pt")])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the extra were not installed
    with pytest.raises(
        ConfigError, match=r"onnxruntime is missing\); install them with: pip install 'ganctl\[export\]'"
    ):
        export.main([run_dir, "--format", "onnx", "-o", str(tmp_path / "G.onnx")])
    assert not (tmp_path / "G.onnx").exists()


def test_a_file_that_fails_the_check_is_not_written(tiny_run, tmp_path, monkeypatch):
    """The check compares before the write: with no tolerance at all, ONNX Runtime's rounding
    (~1e-6, above) fails it, and no file (nor a temporary) is left."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(export, "TOLERANCE", 0.0)
    with pytest.raises(export.ExportMismatch, match="differs from PyTorch's generator by"):
        export.main([str(tiny_run(*MODELS["dcgan"])), "--format", "onnx", "-o", str(tmp_path / "G.onnx")])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # a Python started in a subprocess: 3-6 s of imports on the 2-core machine
def test_readme_snippet_loads_without_ganctl(tiny_run, tmp_path):
    """README's loading example, run by a Python that cannot import ganctl (only torch, numpy, onnxruntime)."""
    pytest.importorskip("onnxruntime")
    run_dir = tiny_run(*MODELS["dcgan"])
    for fmt, name in (("torchscript", "G.pt"), ("onnx", "G.onnx")):
        export.main([str(run_dir), "--format", fmt, "-o", str(tmp_path / name)])
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    snippet = readme.split("<!-- export-snippet -->")[1].split("```python")[1].split("```")[0]
    script = tmp_path / "use.py"
    script.write_text(NO_GANCTL + snippet)
    done = subprocess.run(
        [sys.executable, "-I", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "(4, 1, 28, 28)" in done.stdout, done.stdout


# The dev install puts ganctl on every path of this Python (an editable install), so the script
# first makes importing it fail, as on a machine that never installed ganctl.
NO_GANCTL = """import sys
class NoGanctl:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "ganctl":
            raise ImportError("ganctl is not installed here")
sys.meta_path.insert(0, NoGanctl())
"""
