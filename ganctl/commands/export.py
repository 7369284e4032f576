"""ganctl export: a trained generator as a TorchScript or ONNX file that runs without ganctl.

The file computes what `ganctl sample -o x.pt` saves: G's raw output before any picture
conversion, N x C x H x W images in the dataset's range (dataset.range, [-1, 1] for tanh), or
N x 1 / N x 2 points. Its inputs are `z` (N x z_dim float32 latents, drawn as the model was
trained: N(0, I), or U[0, 1) for model.latent=uniform) and, for a conditional generator, `label`
(N int64 class indices); N is free. A JSON record of these facts rides along (TorchScript's extra
file `ganctl.json`, ONNX's metadata key `ganctl`).
"""

from __future__ import annotations

import io
import json
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ganctl import kinds
from ganctl.commands import options
from ganctl.errors import ArgumentParser, ConfigError, GanctlError
from ganctl.files import atomic_write
from ganctl.generation import class_labels, generate, seeded
from ganctl.training.checkpoint import LoadedGenerator
from ganctl.version import __version__

FORMATS = ("torchscript", "onnx")
METADATA = "ganctl.json"  # TorchScript's extra file; ONNX's metadata key is "ganctl"
TRACE_N = 3  # the batch traced; the check runs other sizes, so a size baked into the graph fails it
CHECK_N = (1, 5)
# Relative to the output's scale (1 for tanh images). ONNX Runtime and TorchScript fuse and reorder
# float32 sums (convolutions, GEMMs), which moves outputs by ~1e-6; a wrong weight, a dropped batch
# norm or a mixed-up label moves them by > 1e-2.
TOLERANCE = 1e-4


class ExportMismatch(GanctlError):
    """The exported file computes something other than the generator; nothing was written."""

    exit_code = 1


class Exported(nn.Module):
    """G with named, positional inputs: forward(z) or forward(z, label)."""

    def __init__(self, G: nn.Module):
        super().__init__()
        self.G = G

    def forward(self, z: torch.Tensor, *label: torch.Tensor) -> torch.Tensor:
        return self.G(z, *label)


def description(model: LoadedGenerator) -> dict:
    """What a user of the file needs to feed it and read its output."""
    d = model.cfg.dataset
    kind = kinds.of(d)
    return {
        "ganctl": __version__,
        "checkpoint": str(model.path),
        "step": model.step,
        "ema": model.ema,
        "dataset": d.name,
        "kind": kind.name,
        "z_dim": model.cfg.model.z_dim,
        "latent": model.cfg.model.latent,
        "output_shape": list(model.data_shape),
        "output_range": list(d.range) if kind.pixels else None,
        "classes": model.classes,
    }


def inputs(model: LoadedGenerator, n: int) -> tuple[torch.Tensor, ...]:
    """Fixed latents (and the classes in turn) for n samples: seed 0 as `ganctl sample` draws them."""
    z = seeded(n, model.cfg.model, 0)
    if model.classes is None:
        return (z,)
    return z, class_labels(n, len(model.classes))


def names(model: LoadedGenerator) -> list[str]:
    return ["z"] if model.classes is None else ["z", "label"]


@contextmanager
def quiet():
    """torch 2.14 calls TorchScript and the TorchScript-based ONNX exporter deprecated, in a
    warning on every call; both still work on the torch versions ganctl admits (< 2.15), and the
    check runs what was written, so the notices would only be noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        yield


def to_torchscript(module: nn.Module, example: tuple[torch.Tensor, ...], meta: dict) -> bytes:
    buffer = io.BytesIO()
    with quiet():
        # A trace, not torch.jit.script: the conditional G sets its batch norms' labels as
        # attributes, which script rejects; the trace records the ops, and shapes stay symbolic.
        traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, buffer, _extra_files={METADATA: json.dumps(meta)})
    return buffer.getvalue()


def run_torchscript(data: bytes, example: tuple[torch.Tensor, ...]) -> np.ndarray:
    with quiet(), torch.no_grad():
        return torch.jit.load(io.BytesIO(data), map_location="cpu")(*example).numpy()


def need_onnx():
    """onnx and onnxruntime, or the one-line error naming the extra that installs them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ConfigError(
            f"--format onnx needs the onnx and onnxruntime packages ({exc.name} is missing); "
            "install them with: pip install 'ganctl[export]'"
        ) from None
    return onnx, onnxruntime


def to_onnx(module: nn.Module, example: tuple[torch.Tensor, ...], meta: dict, input_names: list[str]) -> bytes:
    onnx, _ = need_onnx()
    buffer = io.BytesIO()
    dynamic = {name: {0: "N"} for name in [*input_names, "x"]}
    with quiet():
        # The TorchScript-based exporter: the torch.export one (the default since torch 2.9) also
        # needs onnxscript, which the export extra does not carry.
        torch.onnx.export(
            module,
            example,
            buffer,
            dynamo=False,
            input_names=input_names,
            output_names=["x"],
            dynamic_axes=dynamic,
            opset_version=17,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = "ganctl", json.dumps(meta)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def run_onnx(data: bytes, example: tuple[torch.Tensor, ...], input_names: list[str]) -> np.ndarray:
    _, onnxruntime = need_onnx()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(["x"], {name: t.numpy() for name, t in zip(input_names, example)})[0]


def export_bytes(model: LoadedGenerator, fmt: str) -> tuple[bytes, float]:
    """The exported file's bytes and its largest |difference| from PyTorch's G over CHECK_N;
    ExportMismatch when that exceeds TOLERANCE."""
    module = Exported(model.G).eval()
    input_names = names(model)
    meta = description(model)
    if fmt == "onnx":
        data = to_onnx(module, inputs(model, TRACE_N), meta, input_names)
        run = lambda example: run_onnx(data, example, input_names)  # noqa: E731
    else:
        data = to_torchscript(module, inputs(model, TRACE_N), meta)
        run = lambda example: run_torchscript(data, example)  # noqa: E731
    worst = 0.0
    for n in CHECK_N:
        example = inputs(model, n)
        want = generate(model.G, example[0], labels=example[1] if len(example) > 1 else None).numpy()
        got = run(example)
        if got.shape != want.shape:
            raise ExportMismatch(f"the {fmt} file's output at N = {n} is {got.shape}, PyTorch's {want.shape}")
        diff = float(np.abs(got - want).max())
        scale = max(1.0, float(np.abs(want).max()))
        if not diff <= TOLERANCE * scale:
            raise ExportMismatch(
                f"the {fmt} file differs from PyTorch's generator by {diff:.3g} at N = {n} "
                f"(tolerance {TOLERANCE * scale:.3g}); nothing was written"
            )
        worst = max(worst, diff)
    return data, worst


def signature(model: LoadedGenerator) -> str:
    """The inputs and output in words: `z: N x 64 float32, label: N int64 in 0..9 -> x: N x 1 x 28 x 28 in [-1, 1]`."""
    meta = description(model)
    parts = [f"z: N x {meta['z_dim']} float32 ({'U[0, 1)' if meta['latent'] == 'uniform' else 'N(0, I)'})"]
    if model.classes is not None:
        parts.append(f"label: N int64 in 0..{len(model.classes) - 1}")
    out = " x ".join(["N", *map(str, model.data_shape)])
    if meta["output_range"] is not None:
        out += " in [{:g}, {:g}]".format(*meta["output_range"])
    return f"{', '.join(parts)} -> x: {out}"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="ganctl export",
        description="Write a trained generator as a TorchScript or ONNX file that runs without ganctl.",
    )
    options.add_checkpoint(p)
    p.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="torchscript (torch.jit.load) or onnx (onnxruntime; needs pip install 'ganctl[export]')",
    )
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the file to write, e.g. G.pt or G.onnx")
    options.add_no_ema(p, "export")
    options.add_force(p)
    p.set_defaults(device="cpu")  # a file traced on the CPU runs anywhere; a GPU trace keeps its device
    return p


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    out = Path(args.output)
    if args.format == "onnx":
        need_onnx()  # before the model loads: the missing extra is the first thing to say
    options.claim_output(out, args.force)
    model = options.load_model(args)
    print(f"ganctl: wrote {out} ({write(model, out, args.format)})" + (" (EMA generator)" if model.ema else ""))


def write(model: LoadedGenerator, out: Path, fmt: str) -> str:
    """Export `model` to `out` once the file passed its check (for the command and the API);
    returns the format, inputs, output and the check's difference in words."""
    if fmt not in FORMATS:
        raise ConfigError(f"format {fmt!r} is unknown; accepted: {', '.join(FORMATS)}")
    data, diff = export_bytes(model, fmt)
    atomic_write(out, lambda f: f.write(data))
    sizes = ", ".join(map(str, CHECK_N))
    return f"{fmt}; {signature(model)}; max |diff| vs PyTorch {diff:.2g} at N = {sizes}"
