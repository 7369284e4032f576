"""Training steps/s: ganctl's mnist_bce beside a tutorial-style reference loop, plus the other setups.

One result line, `train_speed key=value ...`:
  bce_ganctl     ganctl's own loop (train.run in this process), steps/s: median, _min, _max
  bce_reference  the tutorial loop below (DataLoader of PIL images, per-sample transforms, .item())
  bce_resident   the same math written plainly with the data in one tensor: what eager PyTorch does
  bce_autograd   ganctl's loop with trainer.backward=autograd (the step before the manual step;
                 on CUDA the two are the same path), interleaved with the others
  ratio          median(bce_ganctl) / median(bce_reference); ratio_pair_min/_max over the
                 interleaved repeats (each ganctl repeat divided by the reference repeat beside it)
  gaussian1d, mnist_goodfellow, svhn_wgan_gp   ganctl steps/s of those experiments (median, _min, _max)
  real_data      1 when the MNIST runs used the real test split, 0 for generated images

ganctl's rate comes from its metrics.csv: steps between the first and the last row over the time
between them, so the first log interval (start-up, first-call allocations) is excluded and the
per-step logging work is included. The reference loops are timed the same way: a warm-up, then
a window of the same number of steps.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import common


def reference_models(device):
    """Setup 001's networks exactly as the post writes them: a Sigmoid layer and BCELoss."""
    from torch import nn

    G = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 784), nn.Tanh()).to(
        device
    )
    D = nn.Sequential(
        nn.Linear(784, 256), nn.LeakyReLU(0.2), nn.Linear(256, 256), nn.LeakyReLU(0.2), nn.Linear(256, 1), nn.Sigmoid()
    ).to(device)
    return G, D


class PILDigits:
    """A torch Dataset the way torchvision's MNIST serves it: one PIL image per item, then transforms."""

    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Pillow 11+ deprecates mode=
            img = Image.fromarray(self.images[i], mode="L")
        return self.transform(img), 0


class ReferenceLoop:
    """The tutorial way: DataLoader over PIL images, Sigmoid + BCELoss, .item() every step."""

    def __init__(self, images, device, batch_size=64):
        import torch
        from torch.utils.data import DataLoader
        from torchvision import transforms

        self.torch, self.device, self.batch_size = torch, device, batch_size
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
        self.loader = DataLoader(
            PILDigits(images, transform), batch_size=batch_size, shuffle=True, drop_last=True, num_workers=0
        )
        self.G, self.D = reference_models(device)
        self.g_opt = torch.optim.Adam(self.G.parameters(), lr=2e-4)
        self.d_opt = torch.optim.Adam(self.D.parameters(), lr=2e-4)
        self.criterion = torch.nn.BCELoss()
        self.batches = iter(self.loader)
        self.d_losses, self.g_losses = [], []

    def next_batch(self):
        try:
            return next(self.batches)
        except StopIteration:  # a new epoch: a new shuffled pass, as `for epoch ...: for x in loader`
            self.batches = iter(self.loader)
            return next(self.batches)

    def step(self):
        torch, device, n = self.torch, self.device, self.batch_size
        images, _ = self.next_batch()
        real = images.reshape(n, -1).to(device)
        real_labels = torch.ones(n, 1, device=device)
        fake_labels = torch.zeros(n, 1, device=device)
        # D step
        z = torch.randn(n, 64, device=device)
        fake = self.G(z)
        d_loss = self.criterion(self.D(real), real_labels) + self.criterion(self.D(fake.detach()), fake_labels)
        self.d_opt.zero_grad()
        d_loss.backward()
        self.d_opt.step()
        # G step, fresh z, non-saturating loss
        z = torch.randn(n, 64, device=device)
        g_loss = self.criterion(self.D(self.G(z)), real_labels)
        self.g_opt.zero_grad()
        g_loss.backward()
        self.g_opt.step()
        self.d_losses.append(d_loss.item())
        self.g_losses.append(g_loss.item())

    def rate(self, steps):
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return steps / (time.perf_counter() - start)


class ResidentLoop:
    """The same math with the data as one uint8 tensor on the device and no host syncs."""

    def __init__(self, images, device, batch_size=64):
        import torch
        import torch.nn.functional as F

        self.torch, self.F, self.device, self.batch_size = torch, F, device, batch_size
        self.data = torch.from_numpy(images.reshape(len(images), -1).copy()).to(device)
        self.G, self.D = reference_models(device)
        self.D = self.D[:-1]  # raw scores; softplus below is BCE on the sigmoid, without its clamp
        self.g_opt = torch.optim.Adam(self.G.parameters(), lr=2e-4)
        self.d_opt = torch.optim.Adam(self.D.parameters(), lr=2e-4)

    def step(self):
        torch, F, n = self.torch, self.F, self.batch_size
        idx = torch.randint(0, self.data.shape[0], (n,), device=self.device)
        real = self.data[idx].float().mul_(2 / 255).sub_(1)
        with torch.no_grad():
            fake = self.G(torch.randn(n, 64, device=self.device))
        d_loss = F.softplus(-self.D(real)).mean() + F.softplus(self.D(fake)).mean()
        self.d_opt.zero_grad()
        d_loss.backward()
        self.d_opt.step()
        g_loss = F.softplus(-self.D(self.G(torch.randn(n, 64, device=self.device)))).mean()
        self.g_opt.zero_grad()
        g_loss.backward()
        self.g_opt.step()

    def rate(self, steps):
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()
        return steps / (time.perf_counter() - start)


def ganctl_rate(overrides, run_dir: Path) -> float:
    """Steady-state steps/s of one in-process ganctl run, from its metrics.csv."""
    from ganctl.cli import compose_run_config
    from ganctl.commands.train import run

    run(compose_run_config(overrides), run_dir)
    return common.steady_rate(run_dir / "metrics.csv")


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    device = common.setup(args)
    # steps per timed window, warm-up steps (= ganctl's first log interval), repeats
    window, warmup, repeats = (10, 5, 1) if args.smoke else (500, 100, 5)

    with tempfile.TemporaryDirectory(prefix="ganctl_bench_") as tmp:
        measure(args, device, window, warmup, repeats, Path(tmp))


def measure(args, device: str, window: int, warmup: int, repeats: int, tmp: Path) -> None:
    root, real = common.mnist_test_root(args.data_root, tmp, n=1000 if args.smoke else 10_000)
    images = common.read_mnist_idx(root / common.MNIST_TEST)
    mnist = [f"dataset.root={root}", "dataset.split=test"]
    bce = common.train_overrides("mnist_bce", warmup + window, warmup, device, mnist)

    common.note(
        f"mnist_bce: {repeats} x {window} steps after {warmup} warm-up, "
        "ganctl / reference / resident / ganctl-autograd "
        f"interleaved, on {'the real' if real else 'generated'} MNIST test split ({len(images)} images)"
    )
    reference, resident = ReferenceLoop(images, device), ResidentLoop(images, device)
    for _ in range(warmup):
        reference.step()
        resident.step()
    ours, theirs, plain, auto = [], [], [], []
    for r in range(repeats):
        ours.append(ganctl_rate(bce, tmp / f"bce_{r}"))
        theirs.append(reference.rate(window))
        plain.append(resident.rate(window))
        auto.append(ganctl_rate(bce + ["trainer.backward=autograd"], tmp / f"bce_autograd_{r}"))
        common.note(
            f"  repeat {r + 1}: ganctl {ours[-1]:.1f}, reference {theirs[-1]:.1f}, "
            f"resident {plain[-1]:.1f}, ganctl with autograd {auto[-1]:.1f} steps/s"
        )
    pairs = [a / b for a, b in zip(ours, theirs)]
    values = {
        **common.spread("bce_ganctl", ours),
        **common.spread("bce_reference", theirs),
        **common.spread("bce_resident", plain),
        **common.spread("bce_autograd", auto),
        "ratio": statistics.median(ours) / statistics.median(theirs),
        "ratio_pair_min": min(pairs),
        "ratio_pair_max": max(pairs),
    }

    # The other setups, ganctl only: (experiment, warm-up steps = log interval, window, extra overrides)
    small = 3 if args.smoke else None
    svhn_root = tmp / "svhn_data"
    common.write_svhn_mat(svhn_root, "train", 256 if args.smoke else 2048)
    others = [
        ("gaussian1d", 2 if args.smoke else 10, 2 if args.smoke else 60, []),
        ("mnist_goodfellow", small or 50, small or 200, mnist),
        (
            "svhn_wgan_gp",
            1,
            1 if args.smoke else 4,
            [f"dataset.root={svhn_root}", "dataset.split=train"] + (["trainer.batch_size=8"] if args.smoke else []),
        ),
    ]
    for name, warm, steps, extra in others:
        overrides = common.train_overrides(name, warm + steps, warm, device, extra)
        rates = [ganctl_rate(overrides, tmp / f"{name}_{r}") for r in range(1 if args.smoke else 3)]
        common.note(f"{name}: {', '.join(f'{x:.2f}' for x in rates)} steps/s")
        values.update(common.spread(name, rates))
    values["real_data"] = int(real)
    common.emit("train_speed", device, values)


if __name__ == "__main__":
    sys.exit(main())
