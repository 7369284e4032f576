"""dataset=folder on real image files written with Pillow: decoding, crop and resize, channels, class
labels, the cache, the memory-mapped path, bad input, the CLI from a folder to samples; and the class
labels of the other image datasets."""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, features
from test_data import write_cifar10, write_idx

from ganctl import folder
from ganctl.config import DatasetConfig
from ganctl.data import BatchSampler, dataset_size, fits_in_memory, has_labels, load_dataset
from ganctl.errors import DataError

from conftest import run_cli, write_svhn_mat

CPU = torch.device("cpu")
WEBP = features.check("webp")


def folder_cfg(path, tmp_path, **kw) -> DatasetConfig:
    return DatasetConfig(name="folder", path=str(path), root=str(tmp_path / "data"), split="train", **kw)


def save(path, img: Image.Image, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def solid(colour, size=(24, 24), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def caches(tmp_path) -> list:
    return sorted(p for p in (tmp_path / "data" / "folder-cache").iterdir() if p.is_dir())


@pytest.fixture
def mixed(tmp_path):
    """Every accepted format and mode, nested, plus a corrupt and a truncated file and files to ignore."""
    d = tmp_path / "imgs"
    save(d / "a_rgb.png", solid((255, 0, 0), (40, 30)))
    save(d / "b_grey.jpg", solid(200, (30, 50), "L"), quality=95)
    save(d / "c.bmp", solid((0, 0, 255), (17, 17)))
    frames = [solid((0, 255, 0)).convert("P"), solid((255, 0, 255)).convert("P")]
    frames[0].save(d / "d_anim.gif", save_all=True, append_images=frames[1:])  # the first frame is green
    save(d / "e_half_white.png", solid((255, 255, 255, 128), mode="RGBA"))  # 50% white over black: grey
    palette = Image.new("P", (24, 24), 1)
    palette.putpalette([0, 0, 0, 255, 255, 0] + [0, 0, 0] * 254)
    save(d / "f_transparent.png", palette, transparency=1)  # every pixel transparent: black
    save(d / "nested" / "deeper" / "g.png", solid((10, 20, 30), (64, 48)))
    if WEBP:
        save(d / "h.webp", solid((0, 128, 255), (20, 20)), lossless=True)
    (d / "bad.jpg").write_bytes(b"not an image at all")
    good = d / "a_rgb.png"
    (d / "truncated.png").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (d / "notes.txt").write_text("ignored")
    save(d / ".hidden.png", solid((1, 2, 3)))
    save(d / ".thumbs" / "x.png", solid((1, 2, 3)))
    return d


def test_every_format_decoded_and_damaged_files_skipped_with_one_warning(mixed, tmp_path, caplog):
    cfg = folder_cfg(mixed, tmp_path, resolution=8)
    with caplog.at_level(logging.INFO, logger="ganctl.data"):
        data = load_dataset(cfg, CPU)
    names = ["a_rgb.png", "b_grey.jpg", "c.bmp", "d_anim.gif", "e_half_white.png", "f_transparent.png"]
    names += ["h.webp"] if WEBP else []
    names += ["nested/deeper/g.png"]  # rows follow the sorted relative paths
    assert data.data.shape == (len(names), 3, 8, 8) and data.data.dtype == torch.uint8 and data.is_image
    px = {name: data.data[i, :, 4, 4].tolist() for i, name in enumerate(names)}
    assert px["a_rgb.png"] == [255, 0, 0]
    assert px["b_grey.jpg"] == pytest.approx([200] * 3, abs=2)  # greyscale repeated in a colour pack
    assert px["c.bmp"] == [0, 0, 255]
    assert px["d_anim.gif"] == [0, 255, 0]
    assert px["e_half_white.png"] == pytest.approx([128] * 3, abs=1)
    assert px["f_transparent.png"] == [0, 0, 0]
    assert px["nested/deeper/g.png"] == [10, 20, 30]
    if WEBP:
        assert px["h.webp"] == [0, 128, 255]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 2 unreadable or truncated files" in warnings[0].message
    assert "bad.jpg" in warnings[0].message and "truncated.png" in warnings[0].message
    assert len(data) == dataset_size(cfg)
    assert data.batch(torch.arange(2)).min() >= -1.0 and data.batch(torch.arange(2)).max() <= 1.0


def test_centre_crop_then_antialiased_resize(tmp_path):
    # 60 x 20: green strips either side of a 20 x 20 square, white above black.
    wide = np.zeros((20, 60, 3), dtype=np.uint8)
    wide[:, :20] = wide[:, 40:] = (0, 255, 0)
    wide[:10, 20:40] = 255
    save(tmp_path / "imgs" / "wide.png", Image.fromarray(wide))
    save(tmp_path / "imgs" / "tall.png", Image.fromarray(np.ascontiguousarray(wide.transpose(1, 0, 2))))
    exact = load_dataset(folder_cfg(tmp_path / "imgs", tmp_path, resolution=20), CPU).data
    assert exact.shape == (2, 3, 20, 20)
    assert (exact[1, :, :10] == 255).all() and (exact[1, :, 10:] == 0).all()  # no green left: a centre crop
    assert (exact[0, :, :, :10] == 255).all() and (exact[0, :, :, 10:] == 0).all()  # the tall one, transposed
    small = load_dataset(folder_cfg(tmp_path / "imgs", tmp_path, resolution=4), CPU).data[1].int()
    assert (small[0] == small[1]).all() and (small[1] == small[2]).all()  # grey stays grey
    rows = small[0, :, 0]
    assert rows[0] > 230 and rows[3] < 25 and rows[1] > rows[2]  # white over black, filtered, not sampled
    assert (rows + rows.flip(0) - 255).abs().max() <= 1  # the filter is symmetric about the edge
    assert (small[0] == small[0, :, :1]).all()  # and constant along each row
    big = load_dataset(folder_cfg(tmp_path / "imgs", tmp_path, resolution=40), CPU).data
    assert big.shape == (2, 3, 40, 40) and (big[1, :, :15] == 255).all() and (big[1, :, 25:] == 0).all()


def test_photos_upright_by_exif_and_large_jpegs_reduced(tmp_path):
    raw = np.zeros((20, 40, 3), dtype=np.uint8)
    raw[:, :20] = 255  # stored white | black; EXIF orientation 6 shows it turned clockwise: white above black
    exif = Image.Exif()
    exif[0x0112] = 6
    save(tmp_path / "imgs" / "a_phone.jpg", Image.fromarray(raw), exif=exif, quality=95)
    save(tmp_path / "imgs" / "b_large.jpg", solid((0, 200, 0), (1600, 1200)), quality=95)
    data = load_dataset(folder_cfg(tmp_path / "imgs", tmp_path, resolution=8), CPU).data.int()
    phone = data[0, 0]
    assert (phone[:3] > 220).all() and (phone[5:] < 35).all()
    assert (data[1] - torch.tensor([0, 200, 0]).view(3, 1, 1)).abs().max() <= 3


def test_channels_auto_rule_and_explicit_choices(tmp_path):
    grey = tmp_path / "grey"
    save(grey / "l.png", Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 3))
    save(grey / "la.png", solid((90, 255), mode="LA", size=(8, 8)))
    save(grey / "p.gif", solid(77, mode="L", size=(8, 8)).convert("P"))
    save(grey / "deep16.png", Image.fromarray(np.full((8, 8), 0x8080, dtype=np.uint16)))
    auto = load_dataset(folder_cfg(grey, tmp_path, resolution=8), CPU).data
    one = load_dataset(folder_cfg(grey, tmp_path, resolution=8, channels="1"), CPU).data
    assert auto.shape == (4, 1, 8, 8) and torch.equal(auto, one)  # all greyscale: one channel
    # Rows in name order: deep16.png, l.png, la.png, p.gif.
    assert (auto[0] == 128).all()  # 16-bit 0x8080 scaled to 8 bits, not clipped at 255
    assert torch.equal(auto[1, 0], torch.arange(64, dtype=torch.uint8).reshape(8, 8) * 3)
    assert (auto[2] == 90).all() and (auto[3] == 77).all()
    three = load_dataset(folder_cfg(grey, tmp_path, resolution=8, channels="3"), CPU).data
    assert three.shape == (4, 3, 8, 8) and torch.equal(three, one.expand(-1, 3, -1, -1))

    save(grey / "red.png", solid((255, 0, 0), (8, 8)))  # one colour image makes the folder colour
    assert load_dataset(folder_cfg(grey, tmp_path, resolution=8), CPU).data.shape == (5, 3, 8, 8)
    luma = load_dataset(folder_cfg(grey, tmp_path, resolution=8, channels="1"), CPU).data
    assert luma.shape == (5, 1, 8, 8) and luma[4, 0, 0, 0] == 76  # ITU-R 601 luma of pure red


def test_labels_from_first_level_subfolders(tmp_path):
    d = tmp_path / "imgs"
    for name, count in (("zebra", 1), ("cat", 3), ("dog", 2)):
        for i in range(count):
            save(d / name / f"{i}.png", solid((40 * i, 0, 0), (12, 12)))
    save(d / "dog" / "puppies" / "p.png", solid((9, 9, 9), (12, 12)))  # deeper folders belong to their top one
    cfg = folder_cfg(d, tmp_path, resolution=8, labels="subfolders")
    assert has_labels(cfg) and not has_labels(folder_cfg(d, tmp_path))
    data = load_dataset(cfg, CPU, labels=True)
    assert data.classes == ["cat", "dog", "zebra"]
    assert data.labels.dtype == torch.int64 and data.labels.tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert data.batch_labels(torch.tensor([6, 0, 4])).tolist() == [2, 0, 1]
    plain = load_dataset(cfg, CPU)
    assert plain.labels is None and plain.classes is None and torch.equal(plain.data, data.data)

    with pytest.raises(DataError, match="dataset.labels=subfolders"):
        load_dataset(folder_cfg(d, tmp_path, resolution=8), CPU, labels=True)
    save(d / "loose.png", solid((0, 0, 0), (12, 12)))
    with pytest.raises(DataError, match=r"1 images lie directly in .*imgs \(loose.png\)"):
        dataset_size(cfg)


def test_labels_of_the_other_datasets(tmp_path):
    digits = [str(d) for d in range(10)]
    labels = np.arange(12, dtype=np.uint8) % 10
    for folder_name in ("MNIST", "FashionMNIST"):
        raw = tmp_path / folder_name / "raw"
        write_idx(raw / "t10k-images-idx3-ubyte.gz", np.zeros((12, 28, 28), dtype=np.uint8))
        write_idx(raw / "t10k-labels-idx1-ubyte.gz", labels)
    cfg = DatasetConfig(name="mnist", root=str(tmp_path), split="test", download=False)
    mnist = load_dataset(cfg, CPU, labels=True)
    assert mnist.classes == digits and mnist.labels.tolist() == labels.tolist()
    cfg = DatasetConfig(name="fashion_mnist", root=str(tmp_path), split="test", download=False)
    fashion = load_dataset(cfg, CPU, labels=True)
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[9] == "Ankle boot" and len(fashion.classes) == 10

    write_svhn_mat(tmp_path / "SVHN", "test", 20, seed=3)
    svhn = load_dataset(DatasetConfig(name="svhn", root=str(tmp_path), split="test", download=False), CPU, labels=True)
    import scipy.io

    y = scipy.io.loadmat(str(tmp_path / "SVHN" / "test_32x32.mat"))["y"].ravel()
    assert svhn.labels.tolist() == [0 if v == 10 else int(v) for v in y] and svhn.classes == digits
    assert 10 in y and 0 in svhn.labels  # the file's 10 is the digit 0
    assert svhn.data.shape == (20, 3, 32, 32)

    write_cifar10(tmp_path, per_batch=4)
    cifar = load_dataset(DatasetConfig(name="cifar10", root=str(tmp_path), download=False), CPU, labels=True)
    assert cifar.classes[0] == "airplane" and cifar.classes[9] == "truck"
    assert len(cifar.labels) == len(cifar) == 20

    for name in ("gaussian1d", "ring8"):
        with pytest.raises(DataError, match=f"dataset={name} has no class labels; accepted: mnist, fashion_mnist"):
            load_dataset(DatasetConfig(name=name, samples_per_epoch=10), CPU, labels=True)


def test_cache_reused_then_rebuilt_when_the_folder_changes(tmp_path, caplog):
    d = tmp_path / "imgs"
    for i in range(3):
        save(d / f"{i}.png", solid((50 * i, 0, 0), (10, 10)))
    cfg = folder_cfg(d, tmp_path, resolution=8)
    with caplog.at_level(logging.INFO, logger="ganctl.data"):
        first = load_dataset(cfg, CPU)
    assert "dataset=folder: decoded" in caplog.text
    (cache,) = caches(tmp_path)
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["shape"] == [3, 3, 8, 8] and manifest["skipped"] == 0
    stamps = [(cache / n).stat().st_mtime_ns for n in ("images.npy", "manifest.json")]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ganctl.data"):
        again = load_dataset(cfg, CPU)
    assert "reusing the cache" in caplog.text and "decoded" not in caplog.text
    assert [(cache / n).stat().st_mtime_ns for n in ("images.npy", "manifest.json")] == stamps
    assert torch.equal(first.data, again.data)

    save(d / "1.png", solid((0, 0, 99), (10, 10)))  # modified
    os.utime(d / "1.png", ns=(10**18, 10**18))
    assert load_dataset(cfg, CPU).data[1, :, 0, 0].tolist() == [0, 0, 99] and len(caches(tmp_path)) == 2
    save(d / "3.png", solid((1, 1, 1), (10, 10)))  # added
    assert len(load_dataset(cfg, CPU)) == 4 and len(caches(tmp_path)) == 3
    (d / "0.png").unlink()  # removed
    assert len(load_dataset(cfg, CPU)) == 3 and len(caches(tmp_path)) == 4
    assert len(load_dataset(folder_cfg(d, tmp_path, resolution=16), CPU)) == 3 and len(caches(tmp_path)) == 5


def test_enlarging_most_images_is_warned_with_a_side_that_fits(tmp_path, caplog):
    """32 px pictures at the default 64 are trained on blown up, at 4x the pixels: one warning, on
    the build and on each reuse, that names the count, their size and a resolution that fits."""
    d = tmp_path / "imgs"
    for i in range(3):
        save(d / f"small{i}.png", solid((40 * i, 0, 0), (40, 32)))  # centre square: 32 px
    save(d / "large.png", solid((0, 0, 0), (80, 80)))
    expected = (
        "dataset=folder: 3 of 4 images are smaller than dataset.resolution=64 (median side 32 px) and were "
        "enlarged to it; dataset.resolution=32 trains on them without enlarging, on 4x fewer pixels"
    )
    for build in ("decoded", "reusing the cache"):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ganctl.data"):
            load_dataset(folder_cfg(d, tmp_path, resolution=64), CPU)
        assert build in caplog.text
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [expected]
    # At a side they all reach, or when at most half are smaller, nothing is said.
    for resolution, extra_large in ((32, 0), (64, 1)):
        if extra_large:  # 3 of 6
            save(d / "large2.png", solid((0, 0, 0), (70, 70)))
            save(d / "large3.png", solid((9, 0, 0), (70, 64)))
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ganctl.data"):
            load_dataset(folder_cfg(d, tmp_path, resolution=resolution), CPU)
        assert "decoded" in caplog.text and not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_an_interrupted_build_is_never_trusted(tmp_path, caplog):
    d = tmp_path / "imgs"
    save(d / "a.png", solid((7, 7, 7), (8, 8)))
    cfg = folder_cfg(d, tmp_path, resolution=8)
    dataset_size(cfg)
    (cache,) = caches(tmp_path)
    # A build killed after writing the pack and before its manifest, and another one mid-pack.
    (cache / "manifest.json").unlink()
    (cache / "images.npy").write_bytes(b"\x93NUMPY half a pack")
    (cache / ".images.npy.tmp4242").write_bytes(b"partial")
    with caplog.at_level(logging.INFO, logger="ganctl.data"):
        data = load_dataset(cfg, CPU)
    assert "decoded" in caplog.text and (data.data == 7).all()
    assert not (cache / ".images.npy.tmp4242").exists() and (cache / "manifest.json").is_file()


def test_memory_mapped_batches_equal_in_memory_batches(tmp_path, monkeypatch):
    d = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for i in range(40):
        save(d / f"c{i % 3}" / f"{i:02d}.png", Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)))
    cfg = folder_cfg(d, tmp_path, resolution=8, labels="subfolders")
    monkeypatch.setenv("GANCTL_MMAP", "0")
    resident = load_dataset(cfg, CPU, labels=True)
    monkeypatch.setenv("GANCTL_MMAP", "1")
    mapped = load_dataset(cfg, CPU, labels=True)
    assert resident.mapped is None and mapped.mapped is not None
    assert mapped.shape == resident.shape == (3, 8, 8) and len(mapped) == 40 and mapped.is_image
    mapped.mapped.budget = 1  # drop the mapped pages after every batch: values must not change
    draws = []
    for data in (resident, mapped):
        torch.manual_seed(3)
        sampler = BatchSampler(len(data), 16, CPU)
        draws.append([(data.batch(idx), data.batch_labels(idx)) for idx in (sampler.next() for _ in range(7))])
    for (x_res, y_res), (x_map, y_map) in zip(*draws):
        assert torch.equal(x_res, x_map) and torch.equal(y_res, y_map)
    monkeypatch.setenv("GANCTL_MMAP", "sometimes")
    with pytest.raises(DataError, match="GANCTL_MMAP=sometimes is invalid"):
        load_dataset(cfg, CPU)


def test_fits_rule(monkeypatch):
    monkeypatch.delenv("GANCTL_MMAP", raising=False)
    assert fits_in_memory(2**20, CPU)[0]
    fits, why = fits_in_memory(2**50, CPU)
    assert not fits and "quarter" in why


@pytest.mark.parametrize(
    "layout, needle",
    [
        ("missing", r"dataset.path=.*missing is not a folder \(.*does not exist\); accepted: a folder of PNG"),
        ("file", r"dataset.path=.*file.png is not a folder \(.*is a file\)"),
        ("empty", r"empty holds no PNG, JPEG, WebP, BMP or GIF files"),
        ("text_only", r"text_only holds no PNG, JPEG"),
        ("all_corrupt", r"none of the 2 image files in .*all_corrupt could be read \(first: a.png: cannot identify"),
    ],
)
def test_bad_input_is_one_line(tmp_path, layout, needle):
    path = tmp_path / layout
    if layout == "file":
        path = save(tmp_path / "file.png", solid((0, 0, 0)))
    elif layout != "missing":
        path.mkdir()
        (path / "readme.txt").write_text("x")
        if layout == "all_corrupt":
            (path / "a.png").write_bytes(b"junk")
            (path / "b.gif").write_bytes(b"GIF89a")
    with pytest.raises(DataError, match=needle) as err:
        dataset_size(folder_cfg(path, tmp_path))
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "data").rglob("images.npy"))


def test_worker_processes_decode_the_same_pixels(tmp_path, monkeypatch):
    d = tmp_path / "imgs"
    rng = np.random.default_rng(1)
    for i in range(folder.POOL_MIN_FILES + 20):
        pixels = rng.integers(0, 256, (6 + i % 5, 9, 3), dtype=np.uint8)
        save(d / f"{i:03d}.{('png', 'bmp')[i % 2]}", Image.fromarray(pixels))
    monkeypatch.setenv("GANCTL_DECODE_WORKERS", "2")
    pooled = load_dataset(folder_cfg(d, tmp_path, resolution=4), CPU).data
    monkeypatch.setenv("GANCTL_DECODE_WORKERS", "1")
    serial = load_dataset(folder_cfg(d, tmp_path / "other", resolution=4), CPU).data
    assert pooled.shape == (folder.POOL_MIN_FILES + 20, 3, 4, 4) and torch.equal(pooled, serial)


def test_cli_from_a_folder_to_samples_and_a_gif(tmp_path):
    """The README's path, class-conditional on the subfolders: --class takes a subfolder's name."""
    d = tmp_path / "imgs"
    rng = np.random.default_rng(2)
    for i in range(8):
        pixels = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
        save(d / ("a" if i % 2 else "b") / f"{i}.{('png', 'jpg')[i % 2]}", Image.fromarray(pixels))
    run = tmp_path / "run"
    proc = run_cli(
        "train",
        "dataset=folder",
        f"dataset.path={d}",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.resolution=16",
        "dataset.labels=subfolders",
        "model=dcgan",
        "model.conditional=true",
        "model.width=8",
        "optim=adam",
        "trainer=default",  # not the root config's 1-D Gaussian schedule of 20 D and 20 G updates a step
        "trainer.steps=3",
        "trainer.batch_size=4",
        "trainer.progress=false",
        "trainer.device=cpu",
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dataset=folder: decoded" in (run / "train.log").read_text()
    proc = run_cli("sample", str(run), "--class", "b", "-n", "4", "-o", str(tmp_path / "x.png"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with Image.open(tmp_path / "x.png") as grid:
        assert grid.mode == "RGB" and grid.size == (2 * (16 + 2) + 2,) * 2  # 2 x 2 samples, 2-pixel borders
    proc = run_cli("sample", str(run), "--class", "c", "-o", str(tmp_path / "y.png"))
    assert proc.returncode == 2 and "accepted: 0=a, 1=b" in proc.stderr
    proc = run_cli(
        "interpolate", str(run), "--class", "a", "--rows", "2", "--steps", "3", "-o", str(tmp_path / "walk.gif")
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 3


def test_one_launch_scans_the_folder_once(tmp_path):
    """`ganctl train dataset=folder` checks the data's size before the run loads it: one walk of the
    folder between them (it was three: the launch's check, the plan, the load). A child process
    counts the walks, so that Hydra's logging set-up stays out of this test process."""
    d = tmp_path / "imgs"
    rng = np.random.default_rng(5)
    for i in range(6):
        save(d / f"{i}.png", Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)))
    counting = (
        "import sys; from ganctl import cli, folder; walks = []; scan = folder.scan\n"
        "folder.scan = lambda root: walks.append(str(root)) or scan(root)\n"
        "cli.main(sys.argv[1:]); print('WALKS', walks)"
    )
    args = [
        "train",
        "dataset=folder",
        f"dataset.path={d}",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.resolution=8",
        "model=dcgan",
        "model.width=4",
        "optim=adam",
        "trainer=default",
        "trainer.steps=1",
        "trainer.batch_size=2",
        "trainer.progress=false",
        "trainer.device=cpu",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    proc = subprocess.run([sys.executable, "-c", counting, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert f"WALKS {[str(d.absolute())]}" in proc.stdout
