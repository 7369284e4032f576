"""ganctl interpolate: path maths, every output format, chosen endpoints and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from ganctl.commands import interpolate, sample, train
from ganctl.errors import ConfigError
from ganctl.generation import generate, seeded
from ganctl.training.checkpoint import load_generator

from conftest import compose, run_cli


@pytest.fixture(scope="module")
def gaussian_run(tmp_path_factory):
    """The default 1-D Gaussian GAN (z_dim 1, uniform latents) for 3 steps."""
    run_dir = tmp_path_factory.mktemp("interp_gauss")
    train.run(
        compose("trainer.steps=3", "trainer.log_every=3", "trainer.progress=false", "trainer.device=cpu"), run_dir
    )
    return run_dir


def G_of(run_dir, z: torch.Tensor) -> torch.Tensor:
    model = load_generator(str(run_dir), torch.device("cpu"))
    return generate(model.G, z, 500)


# ---- path maths -------------------------------------------------------------------------------


def test_paths_hit_both_endpoints_exactly():
    a, b = torch.randn(3, 64), torch.randn(3, 64)
    t = torch.arange(7, dtype=torch.float64) / 6
    for blend in (interpolate.slerp, interpolate.lerp):
        path = blend(a, b, t)
        assert path.shape == (3, 7, 64) and path.dtype == torch.float32
        assert torch.equal(path[:, 0], a) and torch.equal(path[:, -1], b)


def test_slerp_keeps_gaussian_norm_lerp_shrinks_it():
    d = 512
    a, b = torch.randn(200, d, generator=torch.Generator().manual_seed(0)).chunk(2)
    t = torch.tensor([0.5])
    mid_slerp = interpolate.slerp(a, b, t)[:, 0].norm(dim=1)
    mid_lerp = interpolate.lerp(a, b, t)[:, 0].norm(dim=1)
    # Gaussian latents sit near radius sqrt(d); the lerp midpoint of two of them near sqrt(d / 2).
    assert mid_slerp.mean().item() == pytest.approx(math.sqrt(d), rel=0.03)
    assert mid_lerp.mean().item() == pytest.approx(math.sqrt(d / 2), rel=0.03)
    # Equal-norm endpoints: slerp stays on the sphere all the way.
    u, v = a[0] / a[0].norm(), b[0] / b[0].norm()
    norms = interpolate.slerp(u, v, torch.linspace(0, 1, 11)).norm(dim=-1)
    assert norms.tolist() == pytest.approx([1.0] * 11, abs=1e-5)


@pytest.mark.parametrize("mode", interpolate.MODES)
def test_distance_from_start_grows_monotonically(mode):
    points = torch.randn(4, 2, 64, generator=torch.Generator().manual_seed(1))
    z, positions = interpolate.latent_path(points, 12, mode, closed=False)
    assert z.shape == (4, 12, 64) and positions.tolist() == pytest.approx([i / 11 for i in range(12)])
    dist = (z - z[:, :1]).norm(dim=-1)
    assert (dist.diff(dim=1) > 0).all()


def test_degenerate_slerp_falls_back_to_lerp():
    a = torch.ones(1, 8)
    t = torch.linspace(0, 1, 5)
    for b in (2 * a, -a, torch.zeros(1, 8)):  # parallel, antiparallel, zero: no angle to follow
        path = interpolate.slerp(a, b, t)
        assert torch.isfinite(path).all()
        assert torch.allclose(path, interpolate.lerp(a, b, t), atol=1e-6)


def test_closed_tour_visits_each_waypoint_and_loops_without_repeats():
    points = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(2))
    z, positions = interpolate.latent_path(points, 5, "slerp", closed=True)
    assert z.shape == (2, 3 * 4, 16)
    assert positions.tolist() == pytest.approx([k + i / 4 for k in range(3) for i in range(4)])
    for k in range(3):
        assert torch.equal(z[:, 4 * k], points[:, k])  # waypoint k is frame 4k
    # No two frames alike, so the GIF loop has no stutter; the last frame leads back to the first.
    flat = z[0]
    assert torch.cdist(flat, flat).add(torch.eye(len(flat)) * 1e9).min() > 1e-3
    step = (z[0, -1] - z[0, -2]).norm()
    # The closing step is the last quarter of the leg from waypoint 2 back to 0, so it should match
    # the quarter before it. Not exactly: slerp keeps the angle's rate constant, and the norm moves
    # from |p2| to |p0| along the leg, so equal quarters make unequal chords (here 0.4% apart; over
    # 400 rows of other seeds a median 4%, at most 31%). 20% still catches the faults: a missing
    # closing leg jumps a whole leg (~4x a quarter), a repeated frame makes a step of 0.
    assert (z[0, 0] - z[0, -1]).norm().item() == pytest.approx(step.item(), rel=0.2)


def test_default_mode_follows_the_latent_distribution():
    assert interpolate.default_mode(compose("+experiment=mnist_bce")) == "slerp"
    assert interpolate.default_mode(compose()) == "lerp"  # setup 002: one uniform scalar


# ---- image outputs ----------------------------------------------------------------------------


def test_png_grid_rows_by_frames_and_deterministic(mnist_run, tmp_path, capsys):
    interpolate.main([str(mnist_run), "-o", str(tmp_path / "a.png"), "--rows", "3", "--steps", "5", "--seed", "4"])
    assert "3 x 5 frames (slerp" in capsys.readouterr().out
    img = Image.open(tmp_path / "a.png")
    assert img.size == (5 * 30 + 2, 3 * 30 + 2) and img.mode == "L"
    pixels = np.asarray(img)
    assert pixels.std() > 1  # not blank
    interpolate.main([str(mnist_run), "-o", str(tmp_path / "b.png"), "--rows", "3", "--steps", "5", "--seed", "4"])
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    interpolate.main([str(mnist_run), "-o", str(tmp_path / "c.png"), "--rows", "3", "--steps", "5", "--seed", "5"])
    assert not np.array_equal(pixels, np.asarray(Image.open(tmp_path / "c.png")))
    interpolate.main(
        [str(mnist_run), "-o", str(tmp_path / "z.png"), "--rows", "3", "--steps", "5", "--seed", "4", "--zoom", "3"]
    )
    zoomed = Image.open(tmp_path / "z.png")
    assert zoomed.size == (3 * img.width, 3 * img.height)
    assert np.array_equal(np.asarray(zoomed)[::3, ::3], pixels)


def test_seed_endpoints_are_the_samples_of_those_seeds(mnist_run, tmp_path):
    sample.main([str(mnist_run), "-n", "1", "--seed", "3", "-o", str(tmp_path / "a.pt")])
    sample.main([str(mnist_run), "-n", "1", "--seed", "7", "-o", str(tmp_path / "b.pt")])
    interpolate.main(
        [str(mnist_run), "--from-seed", "3", "--to-seed", "7", "--steps", "6", "-o", str(tmp_path / "w.pt")]
    )
    x = torch.load(tmp_path / "w.pt", weights_only=True)
    assert x.shape == (1, 6, 1, 28, 28) and x.dtype == torch.float32
    assert -1 <= x.min() and x.max() <= 1  # the tanh range of the model
    torch.testing.assert_close(x[0, 0], torch.load(tmp_path / "a.pt", weights_only=True)[0])
    torch.testing.assert_close(x[0, -1], torch.load(tmp_path / "b.pt", weights_only=True)[0])
    # In between: G of the slerp latents, nothing else.
    cfg = load_generator(str(mnist_run), torch.device("cpu")).cfg
    z = interpolate.slerp(seeded(1, cfg.model, 3), seeded(1, cfg.model, 7), torch.linspace(0, 1, 6))[0]
    torch.testing.assert_close(x[0], G_of(mnist_run, z))
    # lerp shares the endpoints but not the middle.
    interpolate.main(
        [
            str(mnist_run),
            "--from-seed",
            "3",
            "--to-seed",
            "7",
            "--steps",
            "6",
            "--mode",
            "lerp",
            "-o",
            str(tmp_path / "l.pt"),
        ]
    )
    y = torch.load(tmp_path / "l.pt", weights_only=True)
    torch.testing.assert_close(y[0, [0, -1]], x[0, [0, -1]])
    assert not torch.allclose(y[0, 2], x[0, 2])


def test_walk_between_saved_latents(mnist_run, tmp_path):
    sample.main(
        [
            str(mnist_run),
            "-n",
            "6",
            "--seed",
            "1",
            "-o",
            str(tmp_path / "s.pt"),
            "--save-latents",
            str(tmp_path / "z.pt"),
        ]
    )
    chosen = torch.load(tmp_path / "s.pt", weights_only=True)
    interpolate.main(
        [
            str(mnist_run),
            "--from",
            str(tmp_path / "z.pt"),
            "--index",
            "4",
            "1",
            "--steps",
            "3",
            "-o",
            str(tmp_path / "w.pt"),
        ]
    )
    x = torch.load(tmp_path / "w.pt", weights_only=True)
    torch.testing.assert_close(x[0, 0], chosen[4])
    torch.testing.assert_close(x[0, -1], chosen[1])
    # A tour through three saved samples: they are frames 0, K-1 and 2(K-1).
    interpolate.main(
        [
            str(mnist_run),
            "--from",
            str(tmp_path / "z.pt"),
            "--waypoints",
            "3",
            "--index",
            "5",
            "0",
            "2",
            "--steps",
            "4",
            "-o",
            str(tmp_path / "t.pt"),
        ]
    )
    tour = torch.load(tmp_path / "t.pt", weights_only=True)
    assert tour.shape == (1, 9, 1, 28, 28)
    torch.testing.assert_close(tour[0, [0, 3, 6]], chosen[[5, 0, 2]])


def test_gif_frames_loop_forever(mnist_run, tmp_path):
    out = tmp_path / "w.gif"
    interpolate.main([str(mnist_run), "-o", str(out), "--rows", "4", "--steps", "6", "--fps", "20", "--zoom", "2"])
    gif = Image.open(out)
    assert gif.format == "GIF" and gif.info["loop"] == 0
    frames = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(gif)]
    assert len(frames) == 6
    assert frames[0].shape == (2 * (2 * 30 + 2),) * 2  # 4 paths in a 2 x 2 grid, zoomed twice
    assert gif.info["duration"] == 50
    # Each frame is the PNG grid's column of that frame: compare frame 0 with the grid's first column.
    interpolate.main([str(mnist_run), "-o", str(tmp_path / "w.png"), "--rows", "4", "--steps", "6"])
    grid = np.asarray(Image.open(tmp_path / "w.png"))
    first = frames[0][::2, ::2]
    for r in range(4):
        tile = first[2 + (r // 2) * 30 : (r // 2) * 30 + 30, 2 + (r % 2) * 30 : (r % 2) * 30 + 30]
        assert np.array_equal(tile, grid[2 + r * 30 : r * 30 + 30, 2:30])
    interpolate.main([str(mnist_run), "-o", str(tmp_path / "tour.gif"), "--waypoints", "3", "--steps", "5"])
    assert sum(1 for _ in ImageSequence.Iterator(Image.open(tmp_path / "tour.gif"))) == 12


def test_folder_of_frames_and_force(mnist_run, tmp_path):
    out = tmp_path / "frames"
    interpolate.main([str(mnist_run), "-o", str(out), "--rows", "2", "--steps", "4"])
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"frame_{i:03d}.png" for i in range(4)]
    assert Image.open(out / "frame_000.png").size == (2 * 30 + 2, 30 + 2)
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--force"):
        interpolate.main([str(mnist_run), "-o", str(out), "--steps", "3"])
    assert (out / "keep.txt").read_text() == "mine"
    interpolate.main([str(mnist_run), "-o", str(out), "--steps", "3", "--force"])
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:03d}.png" for i in range(3)]
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


# ---- the 1-D Gaussian model -------------------------------------------------------------------


def test_gaussian_plot_and_values_along_the_path(gaussian_run, tmp_path, capsys):
    interpolate.main([str(gaussian_run), "-o", str(tmp_path / "g.pt"), "--rows", "3", "--steps", "9"])
    assert "(lerp," in capsys.readouterr().out
    x = torch.load(tmp_path / "g.pt", weights_only=True)
    assert x.shape == (3, 9, 1) and torch.isfinite(x).all()
    cfg = load_generator(str(gaussian_run), torch.device("cpu")).cfg
    points = seeded(6, cfg.model, 0).view(3, 2, 1)
    z = interpolate.lerp(points[:, 0], points[:, 1], torch.linspace(0, 1, 9))
    torch.testing.assert_close(x, G_of(gaussian_run, z.reshape(-1, 1)).view(3, 9, 1))

    interpolate.main([str(gaussian_run), "-o", str(tmp_path / "g.png"), "--rows", "3", "--steps", "9"])
    plot = Image.open(tmp_path / "g.png")
    assert plot.size == (640, 360) and plot.mode == "RGB"
    colours = {c for _, c in plot.convert("RGB").getcolors(maxcolors=100_000)}
    assert len(colours) > 5  # curves, target lines and text, not an empty frame
    interpolate.main([str(gaussian_run), "-o", str(tmp_path / "g.gif"), "--steps", "7"])
    gif_frames = list(ImageSequence.Iterator(Image.open(tmp_path / "g.gif")))
    assert len(gif_frames) == 7  # the cursor moves in every frame, so none are merged


def test_scalar_latent_file_for_1d_model(gaussian_run, tmp_path):
    torch.save(torch.tensor([0.0, 0.999]), tmp_path / "ends.pt")
    interpolate.main([str(gaussian_run), "--from", str(tmp_path / "ends.pt"), "-o", str(tmp_path / "g.pt")])
    x = torch.load(tmp_path / "g.pt", weights_only=True)
    torch.testing.assert_close(x[0, [0, -1]], G_of(gaussian_run, torch.tensor([[0.0], [0.999]])))


# ---- bad input --------------------------------------------------------------------------------

BAD = [
    (["--steps", "1"], ["--steps 1", ">= 2"]),
    (["-o", "walk.jpg"], ["'.jpg'", ".gif"]),
    (["--rows", "0"], ["--rows 0"]),
    (["--waypoints", "1"], ["--waypoints 1", ">= 2"]),
    (["--mode", "cubic"], ["cubic", "slerp", "lerp"]),
    (["--fps", "0"], ["--fps 0"]),
    (["--from-seed", "1"], ["--to-seed"]),
    (["--from-seed", "1", "--to-seed", "2", "--rows", "3"], ["--rows 3", "--from-seed"]),
    (["--from-seed", "2", "--to-seed", "2"], ["--from-seed 2 --to-seed 2", "different"]),
    (["--from-seed", "1", "--to-seed", "2", "--waypoints", "3"], ["--waypoints", "--from z.pt"]),
    (["--index", "0", "1"], ["--index", "--from"]),
    (["--from", "z.pt", "--index", "0"], ["--index 0", "two rows"]),
    (["--from", "z.pt", "--index", "2", "2"], ["repeats"]),
    (["--from", "z.pt", "--index", "0", "9"], ["--index 9", "0..5"]),
    (["--from", "one.pt"], ["holds 1 latent", "needs 2"]),
    (["--from", "z.pt", "--waypoints", "3", "--index", "0", "1"], ["gives 2 rows", "3 rows for --waypoints 3"]),
    (["--from", "missing.pt"], ["missing.pt", "does not exist"]),
    (["--from", "wide.pt"], ["6 x 3", "N x 64"]),
    (["--from", "dict.pt"], ["holds a dict"]),
    (["--from", "text.pt"], ["not a readable tensor file"]),
]


@pytest.mark.parametrize("args, needles", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_clear_error(mnist_run, tmp_path, monkeypatch, args, needles):
    monkeypatch.chdir(tmp_path)
    torch.save(torch.randn(6, 64), tmp_path / "z.pt")
    torch.save(torch.randn(6, 3), tmp_path / "wide.pt")
    torch.save(torch.randn(1, 64), tmp_path / "one.pt")
    torch.save({"z": torch.randn(6, 64)}, tmp_path / "dict.pt")
    (tmp_path / "text.pt").write_text("not a tensor")
    with pytest.raises(ConfigError) as err:
        interpolate.main([str(mnist_run), *args])
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)
    assert not list(tmp_path.glob("*.png")), "an output was written for bad input"


def test_cli_errors_exit_2_with_one_line(mnist_run, tmp_path):
    for args, needle in (
        (["--steps", "1"], "--steps 1"),
        (["--from", str(tmp_path / "z.pt"), "-o", str(tmp_path / "w.png")], "N x 64"),
    ):
        torch.save(torch.randn(4, 10), tmp_path / "z.pt")
        proc = run_cli("interpolate", str(mnist_run), *args, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("ganctl: error: ") and needle in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "w.png").exists()
