"""Pictures of training: curves.png and samples/progress.gif at the end of a run and by `ganctl report`,
and `ganctl eval --nn`'s nearest-neighbour sheet."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from ganctl import images, plots
from ganctl.commands import evaluate
from ganctl.commands.train import run
from ganctl.data import load_idx, ring_modes
from ganctl.errors import ConfigError

from conftest import compose, run_cli


def decoded(path):
    with Image.open(path) as picture:
        picture.load()  # a truncated or corrupt file fails here, not only its header
        return picture.copy()


def gif_frames(path):
    with Image.open(path) as gif:
        loop = gif.info.get("loop")
        frames = [(frame.convert("RGB"), frame.info.get("duration")) for frame in ImageSequence.Iterator(gif)]
    return frames, loop


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    """ring8 through the real CLI: 40 steps, a scatter picture every 10."""
    run_dir = tmp_path_factory.mktemp("pictures") / "ring8"
    proc = run_cli(
        "train",
        "+experiment=ring8",
        "trainer.steps=40",
        "trainer.sample_every=10",
        "trainer.log_every=10",
        "trainer.progress=false",
        "trainer.device=cpu",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr
    return run_dir


def check_pictures(run_dir, panels_at_least=2):
    curves = decoded(run_dir / "curves.png")
    assert curves.width > 600 and curves.height > panels_at_least * 250
    steps = sorted(int(p.stem.split("_")[1]) for p in (run_dir / "samples").glob("step_*.png"))
    frames, loop = gif_frames(run_dir / "samples" / "progress.gif")
    assert len(frames) == len(steps) and loop == 0
    assert {frame.size for frame, _ in frames} == {frames[0][0].size}
    assert all(duration >= 100 for _, duration in frames) and frames[-1][1] > frames[0][1]
    return curves, frames, steps


def test_a_run_ends_with_its_curves_and_progress_gif_and_report_redraws_them(ring_run):
    curves, frames, steps = check_pictures(ring_run)
    assert steps == [10, 20, 30, 40]
    scatter = decoded(ring_run / "samples" / "step_000040.png")
    assert frames[0][0].width == scatter.width and frames[0][0].height == scatter.height + images.CAPTION
    # Beneath each caption strip ("step N / 40" and its bar) is that step's picture, in step order
    # (up to the GIF's 256-colour palette).
    for (frame, _), step in zip(frames, steps):
        picture = np.asarray(decoded(ring_run / "samples" / f"step_{step:06d}.png").convert("RGB"), dtype=float)
        beneath = np.asarray(frame.crop((0, images.CAPTION, frame.width, frame.height)), dtype=float)
        assert np.abs(beneath - picture).mean() < 2.0, step
    strips = {frame.crop((0, 0, frame.width, images.CAPTION)).tobytes() for frame, _ in frames}
    assert len(strips) == len(frames)

    (ring_run / "curves.png").unlink()
    (ring_run / "samples" / "progress.gif").unlink()
    proc = run_cli("report", str(ring_run))
    assert proc.returncode == 0, proc.stderr
    assert "curves.png, samples/progress.gif" in proc.stdout
    redrawn, _, _ = check_pictures(ring_run)
    assert redrawn.size == curves.size


def test_an_evaluated_run_gets_a_metric_panel_and_histogram_frames_of_one_size(ring_run, tmp_path):
    """The 1-D Gaussian logs w1 (a third panel); its matplotlib histograms vary in size, the frames do not."""
    run_dir = tmp_path / "gauss"
    overrides = ("trainer.steps=40", "trainer.log_every=10", "trainer.sample_every=10", "trainer.eval_every=20")
    run(compose(*overrides, "trainer.progress=false", "trainer.device=cpu"), run_dir)
    curves, frames, steps = check_pictures(run_dir, panels_at_least=3)
    assert steps == [10, 20, 30, 40]
    assert curves.height > decoded(ring_run / "curves.png").height + 200  # one panel more than ring8's


def red(picture):
    """Where a picture is the target's red (mode rings, target curve), as a boolean mask."""
    rgb = np.asarray(picture.convert("RGB")).astype(int)
    return (rgb[..., 0] > 180) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)


def overlap(a, b):
    return (a & b).sum() / (a | b).sum()


def orange(picture):
    rgb = np.asarray(picture.convert("RGB")).astype(int)
    return (rgb[..., 0] > 220) & (abs(rgb[..., 1] - 127) < 40) & (rgb[..., 2] < 80)


def test_every_scatter_of_a_run_shares_one_view(ring_run):
    """The progress GIF's frames: one picture size, and the mode rings at the same pixels in each."""
    pictures = [decoded(p) for p in sorted((ring_run / "samples").glob("step_*.png"))]
    assert len({p.size for p in pictures}) == 1
    first = red(pictures[0])
    assert first.sum() > 100  # eight rings, each some 30 pixels round
    for picture in pictures[1:]:
        assert overlap(first, red(picture)) > 0.8  # samples under a ring shade its anti-aliased edge


def test_scatter_view_comes_from_the_modes_and_outliers_sit_on_its_edge():
    class Ring:
        radius = 2.0

    modes = ring_modes(Ring)
    assert plots.mixture_view(modes, 0.02) == ((-2.5, 2.5), (-2.5, 2.5))
    rng = np.random.default_rng(0)
    near = modes[rng.integers(0, 8, 2000)] + rng.normal(size=(2000, 2)) * 0.02
    wild = np.concatenate([near, [[40.0, 0.0], [-3.0, -90.0], [np.nan, 1.0]]])
    tidy, stray = plots.scatter(near, modes, 0.02), plots.scatter(wild, modes, 0.02)
    assert tidy.size == stray.size == (480, 500)
    assert overlap(red(tidy), red(stray)) > 0.95  # the outliers moved no ring
    assert orange(tidy).sum() == 0 and orange(stray).sum() > 20  # two crosses on the frame; NaN dropped


def test_histogram_keeps_one_range_whatever_the_samples():
    rng = np.random.default_rng(0)
    good = plots.histogram(rng.normal(4.0, 1.25, 5000), 4.0, 1.25)
    far = plots.histogram(np.concatenate([rng.normal(4.0, 1.25, 5000), np.full(500, 30.0)]), 4.0, 1.25)
    collapsed = plots.histogram(np.full(5000, 4.2), 4.0, 1.25)
    assert good.size == far.size == collapsed.size == (600, 360)
    # The target curve stays put: the same x range and the same density axis in all three. 0.8, not
    # 1: its anti-aliased edge blends with whichever bars lie under it; a moved axis scores < 0.3.
    assert overlap(red(good), red(far)) > 0.8 and overlap(red(good), red(collapsed)) > 0.8


def test_value_frames_share_the_plot_and_move_only_the_cursor():
    values = np.array([[2.0, 3.0, 5.0, 6.0], [5.0, np.inf, 4.0, 3.5]])
    positions = np.linspace(0, 1, 4)
    still = plots.value_plot(values, positions, 4.0, 1.25, ["path 0", "path 1"], "title")
    frames = plots.value_frames(values, positions, 4.0, 1.25, ["path 0", "path 1"], "title")
    assert len(frames) == 4 and {f.size for f in frames} == {still.size} == {(640, 360)}
    arrays = [np.asarray(f).astype(int) for f in frames]
    assert all(np.abs(a - b).sum() > 0 for a, b in zip(arrays, arrays[1:]))
    # Outside the cursor's column and its dots, a frame is the still picture.
    differs = (np.abs(arrays[0] - np.asarray(still).astype(int)).sum(axis=2) > 0).mean()
    assert 0 < differs < 0.05


def test_nn_sheet_of_a_checkpoint_has_rows_by_k_plus_one_tiles(mnist_run, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    evaluate.main([str(mnist_run), "--nn", "--nn-rows", "3", "--nn-k", "4", "-o", str(out), "--device", "cpu"])
    assert decoded(out).size == images.nn_sheet_size(3, 4, 28, 28)
    line = capsys.readouterr().out
    assert "nearest real image of 3 samples" in line and str(out) in line


def tile(sheet, row, column, size=28):
    """The pixels of one tile of an nn sheet: column 0 is the sample, 1..k its neighbours."""
    side = size * images.NN_ZOOM
    left = images.NN_PAD + (column and images.NN_GAP) + column * (side + images.NN_PAD)
    top = images.NN_HEADER + row * (side + images.NN_LABEL + images.NN_PAD)
    return np.asarray(sheet.crop((left, top, left + side, top + side)))


def test_nn_finds_a_copied_training_image_at_distance_zero(mnist_root, tmp_path, capsys):
    """Samples that are copies of real images: each one's nearest neighbour is itself, at L2 0."""
    cfg = compose("+experiment=mnist_bce", f"dataset.root={mnist_root}", "dataset.split=test").dataset
    real = np.array(load_idx(cfg, 0))  # writable: torch warns on a read-only buffer
    copies = real[[7, 1234, 9999], 0]
    np.savez(tmp_path / "copies.npz", copies)
    out = tmp_path / "copies_nn.png"
    args = ["--dataset", "mnist", "--data-root", str(mnist_root), "--split", "test", "--nn", "--nn-k", "2"]
    evaluate.main([str(tmp_path / "copies.npz"), *args])  # -o left out: <stem>_nn.png beside the .npz
    assert "(min 0)" in capsys.readouterr().out
    sheet = decoded(out)
    assert sheet.size == images.nn_sheet_size(3, 2, 28, 28)
    for row in range(3):
        sample, first = tile(sheet, row, 0), tile(sheet, row, 1)
        assert np.array_equal(sample, first)
        assert np.array_equal(sample[:: images.NN_ZOOM, :: images.NN_ZOOM, 0], copies[row])
        assert not np.array_equal(first, tile(sheet, row, 2))

    # The chunked search (10,000 images, several blocks) against every distance at once.
    pool = torch.from_numpy(real)
    index, dist = evaluate.nearest_real(pool[[5]], pool, k=3)
    every = (pool.flatten(1).double() - pool[5].flatten().double()).pow(2).sum(1).sqrt()
    assert index[0, 0] == 5 and dist[0].tolist() == pytest.approx(every.sort().values[:3].tolist())


def test_nn_refuses_a_model_of_points_with_one_line(ring_run):
    proc = run_cli("eval", str(ring_run), "--nn", timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--nn compares images" in proc.stderr and "ring8" in proc.stderr
    with pytest.raises(ConfigError, match="accepted: -o FILE.png"):
        evaluate.main([str(ring_run), "--nn", "-o", "sheet.json"])


def test_a_picture_that_fails_to_draw_warns_and_does_not_fail_the_run(tmp_path, capsys):
    from ganctl.commands.report import end_of_run

    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "step_000010.png").write_bytes(b"cut short by a crash")
    end_of_run(tmp_path)
    err = capsys.readouterr().err
    assert err.startswith("ganctl: warning: could not draw") and f"ganctl report {tmp_path}" in err
    assert not (tmp_path / "samples" / "progress.gif").exists()
