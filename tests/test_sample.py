"""ganctl sample in-process: batching, output formats, truncation, and checkpoints saved on CUDA."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from ganctl import images
from ganctl.commands import sample
from ganctl.errors import ConfigError
from ganctl.generation import generate, seeded
from ganctl.training.checkpoint import load_generator


def as_if_saved_on_cuda(src, dst) -> None:
    """Rewrite a checkpoint so its tensors say they live on cuda:0, as one saved from a GPU run does.

    torch.save records each storage's device as a string in data.pkl; pickle memoises it, so one
    'cpu' string stands for every storage. Other 'cpu' strings (the config's trainer.device, the
    RNG state's key) become 'cuda:0' too, as in a real GPU run.
    """
    with zipfile.ZipFile(src) as zin:
        names = zin.namelist()
        pkl = next(n for n in names if n.endswith("/data.pkl"))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zout:
            for name in names:
                data = zin.read(name)
                if name == pkl:
                    assert data.count(b"X\x03\x00\x00\x00cpu") >= 1
                    data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
                zout.writestr(name, data)
    dst.write_bytes(buf.getvalue())


def test_checkpoint_saved_on_cuda_loads_on_cpu(mnist_run, tmp_path):
    cuda_ckpt = tmp_path / "from_gpu.pt"
    as_if_saved_on_cuda(mnist_run / "checkpoints" / "last.pt", cuda_ckpt)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(cuda_ckpt, weights_only=True)  # the failure map_location exists to avoid
    cpu = torch.device("cpu")
    model = load_generator(str(cuda_ckpt), cpu)
    assert all(p.device == cpu for p in model.G.parameters())
    z = seeded(8, model.cfg.model, 0)
    reference = load_generator(str(mnist_run), cpu)
    torch.testing.assert_close(generate(model.G, z, 8), generate(reference.G, z, 8))


def test_batches_and_uint8_conversion_change_nothing(mnist_run, tmp_path):
    cpu = torch.device("cpu")
    model = load_generator(str(mnist_run), cpu)
    z = seeded(70, model.cfg.model, 2)
    whole = generate(model.G, z, 70)
    torch.testing.assert_close(generate(model.G, z, 16), whole)
    to_pixels = lambda x: images.to_uint8(x, model.cfg.dataset.range)  # noqa: E731
    pixels = generate(model.G, z, 16, convert=to_pixels)
    assert pixels.dtype == torch.uint8 and torch.equal(pixels, to_pixels(whole))


def test_many_samples_in_batches_npz_pt_and_folder(mnist_run, tmp_path, capsys):
    sample.main([str(mnist_run), "-n", "1200", "--batch-size", "500", "-o", str(tmp_path / "s.npz")])
    arr = np.load(tmp_path / "s.npz")["arr_0"]
    assert arr.shape == (1200, 28, 28) and arr.dtype == np.uint8
    err = capsys.readouterr().err
    assert "3/3" in err  # the progress bar counted three batches of at most 500
    sample.main([str(mnist_run), "-n", "1200", "-o", str(tmp_path / "s.pt")])
    raw = torch.load(tmp_path / "s.pt", weights_only=True)
    assert raw.shape == (1200, 1, 28, 28) and raw.dtype == torch.float32 and raw.abs().max() <= 1
    # The .npz is the raw tensor's pixels: one conversion, whatever the batch size.
    assert np.array_equal(arr, images.to_uint8(raw, [-1.0, 1.0])[:, 0].numpy())
    sample.main([str(mnist_run), "-n", "12", "-o", str(tmp_path / "digits")])
    files = sorted((tmp_path / "digits").iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(12)]
    assert np.array_equal(np.asarray(Image.open(files[5])), arr[5])


def test_truncation_bounds_gaussian_latents(mnist_run, tmp_path):
    cfg = load_generator(str(mnist_run), torch.device("cpu")).cfg
    z = seeded(2000, cfg.model, 0, truncation=0.5)
    assert z.abs().max() <= 0.5 and z.std() < 0.35
    assert torch.equal(z, seeded(2000, cfg.model, 0, truncation=0.5))
    sample.main(
        [
            str(mnist_run),
            "-n",
            "4",
            "--truncation",
            "0.5",
            "-o",
            str(tmp_path / "t.png"),
            "--save-latents",
            str(tmp_path / "z.pt"),
        ]
    )
    assert torch.load(tmp_path / "z.pt", weights_only=True).abs().max() <= 0.5
    with pytest.raises(ConfigError, match="--truncation 0"):
        sample.main([str(mnist_run), "--truncation", "0", "-o", str(tmp_path / "u.png")])
