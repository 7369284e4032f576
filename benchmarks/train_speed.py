"""Training speed: ganctl beside tutorial-style reference loops of setups 001, 002 and 003.

One result line, `train_speed key=value ...`:
  bce_ganctl     ganctl's own loop for mnist_bce (train.run in this process), steps/s: median, _min, _max
  bce_reference  the tutorial loop below (DataLoader of PIL images, per-sample transforms, .item())
  bce_resident   the same math written plainly with the data in one tensor: what eager PyTorch does
  bce_autograd   ganctl's loop with trainer.backward=autograd (the step before the manual step;
                 on CUDA the two are the same path), interleaved with the others
  ratio          median(bce_ganctl) / median(bce_reference); ratio_pair_min/_max over the
                 interleaved repeats (each ganctl repeat divided by the reference repeat beside it)
  g1d_ganctl, g1d_reference   setup 002 (+experiment=gaussian1d) in ganctl and in the loop of
                 devnag's gan_pytorch.py (repository HEAD, the 2018 rewrite), iterations/s (one
                 iteration = 20 D + 20 G updates on batches of 500): median, _min, _max
  g1d_ratio      median(g1d_ganctl) / median(g1d_reference)
  conv_ganctl, conv_reference   setup 003 (+experiment=svhn_wgan_gp: WGAN-GP, 5 critic updates
                 per G update, batch 64) in ganctl and in a pytorch/examples-dcgan-style loop with
                 the same nets and loss, iterations/s (one iteration = 5 critic + 1 G update), on
                 generated SVHN-shaped images: median, _min, _max
  conv_ratio     median(conv_ganctl) / median(conv_reference)
  conv_auto      setup 003 in ganctl with trainer.precision=auto (bf16 autocast where the hardware
                 has bf16 units and it measures at least 10% faster; else fp32), interleaved with
                 the two above; conv_auto_ratio = median(conv_auto) / median(conv_reference)
  conv_precision the precision precision=auto picked for setup 003 on this machine
  best_ganctl, best_reference   the conv recipe +experiment=mnist_best (spectral-norm D, hinge,
                 lazy R1 every 16, translation augmentation, G EMA) in ganctl and in a
                 pytorch/examples-dcgan-style loop of the same recipe, steps/s (1 D + 1 G update);
                 best_ratio, and best_auto / best_auto_ratio with trainer.precision=auto
  gaussian1d, svhn_wgan_gp   the same numbers as g1d_ganctl and conv_ganctl (the names of earlier
                 tables); mnist_goodfellow: ganctl steps/s of setup 004 (median, _min, _max)
  real_data      1 when the MNIST runs used the real test split, 0 for generated images
  cpu, torch     the CPU model (/proc/cpuinfo) and torch version, so a line read alone says where
                 it was measured

ganctl's rate comes from its metrics.csv: steps between the first and the last row over the time
between them, so the first log interval (start-up, first-call allocations) is excluded and the
per-step logging work is included. The reference loops are timed the same way: a warm-up, then
a window of the same number of steps. Each reference is interleaved with its ganctl run, repeat
by repeat, in this one process, because the host's speed drifts by 20-30% over minutes.

Sizes (2 threads on the 2-core dev CPU, the whole script ~3-4 min): mnist_bce 5 repeats x 500
steps; gaussian1d 5 x 50 iterations; svhn_wgan_gp only 3 x 4 iterations after 2 of warm-up on
2,048 images, since one iteration takes ~1 s on that CPU (on CUDA it runs 3 x 100); mnist_best
3 x 60 steps after 20.
"""

from __future__ import annotations

import logging
import re
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


class TimedLoop:
    """A reference loop's rate: `steps` calls of its step() per second, the device's queue drained."""

    device: str

    def step(self) -> None:
        raise NotImplementedError

    def rate(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        if str(self.device).startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        return steps / (time.perf_counter() - start)


class LoaderLoop(TimedLoop):
    """A tutorial loop fed by a DataLoader (`self.loader`), epoch after epoch."""

    loader: object
    batches: object

    def next_batch(self):
        try:
            return next(self.batches)
        except StopIteration:  # a new epoch: a new shuffled pass, as `for epoch ...: for x in loader`
            self.batches = iter(self.loader)
            return next(self.batches)


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


class ReferenceLoop(LoaderLoop):
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


class ResidentLoop(TimedLoop):
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


def moments(d):
    """Mean, std, skewness and excess kurtosis of all of d, with plain tensor ops as devnag's script."""
    import torch

    mean = torch.mean(d)
    diffs = d - mean
    std = torch.pow(torch.mean(torch.pow(diffs, 2.0)), 0.5)
    zscores = diffs / std
    skew = torch.mean(torch.pow(zscores, 3.0))
    kurtosis = torch.mean(torch.pow(zscores, 4.0)) - 3.0
    return torch.cat((mean.reshape(1), std.reshape(1), skew.reshape(1), kurtosis.reshape(1)))


def extract(v):
    """A loss as a Python list, the script's way of reading it for its printout (a host sync)."""
    return v.detach().cpu().numpy().ravel().tolist()


class Gaussian1dReference(TimedLoop):
    """Setup 002 as devnag's gan_pytorch.py (repository HEAD) trains it, plots off.

    N(4, 1.25) target drawn with numpy; G 1-5-5-1 tanh/tanh/linear on U[0,1) noise; D sees the 4
    moments of a whole batch of 500, 4-10-10-1 with a sigmoid after every layer; BCELoss; SGD
    1e-3 momentum 0.9. An iteration is 20 D updates (real and detached fake scored and
    backpropagated separately, one step) then 20 G updates, each loss extracted as it goes.
    """

    def __init__(self, device, batch=500, d_steps=20, g_steps=20, seed=0):
        import numpy as np
        import torch
        from torch import nn

        class Generator(nn.Module):
            def __init__(self):
                super().__init__()
                self.map1, self.map2, self.map3 = nn.Linear(1, 5), nn.Linear(5, 5), nn.Linear(5, 1)

            def forward(self, x):
                x = torch.tanh(self.map1(x))
                x = torch.tanh(self.map2(x))
                return self.map3(x)

        class Discriminator(nn.Module):
            def __init__(self):
                super().__init__()
                self.map1, self.map2, self.map3 = nn.Linear(4, 10), nn.Linear(10, 10), nn.Linear(10, 1)

            def forward(self, x):
                x = torch.sigmoid(self.map1(x))
                x = torch.sigmoid(self.map2(x))
                return torch.sigmoid(self.map3(x))

        self.torch, self.np, self.device = torch, np, device
        self.batch, self.d_steps, self.g_steps = batch, d_steps, g_steps
        self.rng = np.random.default_rng(seed)
        self.G, self.D = Generator().to(device), Discriminator().to(device)
        self.criterion = nn.BCELoss()
        self.d_opt = torch.optim.SGD(self.D.parameters(), lr=1e-3, momentum=0.9)
        self.g_opt = torch.optim.SGD(self.G.parameters(), lr=1e-3, momentum=0.9)
        self.dre = self.dfe = self.ge = 0.0

    def real_batch(self):
        return self.torch.tensor(
            self.rng.normal(4.0, 1.25, (1, self.batch)), dtype=self.torch.float32, device=self.device
        )

    def noise(self):
        return self.torch.rand(self.batch, 1, device=self.device)

    def step(self):
        torch, G, D, criterion = self.torch, self.G, self.D, self.criterion
        ones, zeros = torch.ones(1, device=self.device), torch.zeros(1, device=self.device)
        for _ in range(self.d_steps):
            D.zero_grad()
            d_real_error = criterion(D(moments(self.real_batch())), ones)
            d_real_error.backward()
            d_fake_data = G(self.noise()).detach()
            d_fake_error = criterion(D(moments(d_fake_data.t())), zeros)
            d_fake_error.backward()
            self.d_opt.step()
            self.dre, self.dfe = extract(d_real_error)[0], extract(d_fake_error)[0]
        for _ in range(self.g_steps):
            G.zero_grad()
            g_error = criterion(D(moments(G(self.noise()).t())), ones)  # G wants D to say "real"
            g_error.backward()
            self.g_opt.step()
            self.ge = extract(g_error)[0]


class PILImages:
    """A torch Dataset over N x H x W x 3 uint8 images served as PIL images, as ImageFolder/SVHN do."""

    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), 0


def conv_reference_models(device, nz=128, width=64):
    """Setup 003's nets written the pytorch/examples way (the shapes of ganctl's dcgan at 32x32)."""
    from torch import nn

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Sequential(nn.Linear(nz, 4 * width * 4 * 4), nn.ReLU(True))
            self.main = nn.Sequential(
                nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1),
                nn.ReLU(True),
                nn.ConvTranspose2d(2 * width, width, 4, 2, 1),
                nn.ReLU(True),
                nn.ConvTranspose2d(width, 3, 4, 2, 1),
                nn.Tanh(),
            )

        def forward(self, z):
            return self.main(self.fc(z).view(-1, 4 * width, 4, 4))

    class Critic(nn.Module):
        def __init__(self):
            super().__init__()
            self.main = nn.Sequential(
                nn.Conv2d(3, width, 5, 2, 2),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(width, 2 * width, 5, 2, 2),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(2 * width, 4 * width, 5, 2, 2),
                nn.LeakyReLU(0.2, inplace=True),
            )
            self.fc = nn.Linear(4 * width * 4 * 4, 1)

        def forward(self, x):
            return self.fc(self.main(x).view(x.size(0), -1)).view(-1)

    return Generator().to(device), Critic().to(device)


class ConvReference(LoaderLoop):
    """WGAN-GP on SVHN-shaped images the tutorial way: DataLoader of PIL images, .item() per update.

    Same math as ganctl's setup 003: per iteration d_steps critic updates, each on a fresh real
    batch and a fresh detached fake batch, loss D(fake) - D(real) + 10 (|grad D(mix)| - 1)^2 with the
    gradient taken by autograd.grad(create_graph=True); then one G update on -D(G(z)). Adam 1e-4,
    betas (0.5, 0.9). The DataLoader has no workers, as the MNIST reference, so both sides use the
    same cores.
    """

    def __init__(self, images, device, batch_size=64, d_steps=5, gp_weight=10.0, nz=128):
        import torch
        from torch.utils.data import DataLoader
        from torchvision import transforms

        self.torch, self.device, self.batch_size, self.d_steps = torch, device, batch_size, d_steps
        self.gp_weight, self.nz = gp_weight, nz
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
        self.loader = DataLoader(
            PILImages(images, transform), batch_size=batch_size, shuffle=True, drop_last=True, num_workers=0
        )
        self.batches = iter(self.loader)
        self.G, self.D = conv_reference_models(device, nz)
        self.g_opt = torch.optim.Adam(self.G.parameters(), lr=1e-4, betas=(0.5, 0.9))
        self.d_opt = torch.optim.Adam(self.D.parameters(), lr=1e-4, betas=(0.5, 0.9))
        self.d_losses, self.g_losses = [], []

    def gradient_penalty(self, real, fake):
        torch = self.torch
        alpha = torch.rand(real.size(0), 1, 1, 1, device=self.device)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        scores = self.D(mixed)
        grad = torch.autograd.grad(
            outputs=scores, inputs=mixed, grad_outputs=torch.ones_like(scores), create_graph=True, retain_graph=True
        )[0]
        return ((grad.view(grad.size(0), -1).norm(2, dim=1) - 1) ** 2).mean() * self.gp_weight

    def step(self):
        torch, n = self.torch, self.batch_size
        for _ in range(self.d_steps):
            real = self.next_batch()[0].to(self.device)
            self.D.zero_grad()
            fake = self.G(torch.randn(n, self.nz, device=self.device))
            d_loss = self.D(fake.detach()).mean() - self.D(real).mean() + self.gradient_penalty(real, fake.detach())
            d_loss.backward()
            self.d_opt.step()
            self.d_losses.append(d_loss.item())
        self.G.zero_grad()
        g_loss = -self.D(self.G(torch.randn(n, self.nz, device=self.device))).mean()
        g_loss.backward()
        self.g_opt.step()
        self.g_losses.append(g_loss.item())


class RecipeReference(LoaderLoop):
    """+experiment=mnist_best written the tutorial way: DataLoader of PIL digits, .item() per update.

    The nets are ganctl's own (built from the experiment's config by ganctl.models), and the
    augmentation is ganctl.augment's translation (DiffAugment's), so that what differs is the
    loop: per step one D update on a fresh real batch and a detached fake batch, hinge loss,
    every 16th update R1 on the real batch (gamma 0.01, scaled by 16) by autograd.grad with
    create_graph; one G update on -D(G(z)); Adam 2e-4 (0.5, 0.999) through optimizer.step();
    then G's EMA updated parameter by parameter.
    """

    def __init__(self, images, device, overrides, batch_size=64):
        import copy

        import torch
        from torch.utils.data import DataLoader
        from torchvision import transforms

        from ganctl import augment
        from ganctl.cli import compose_run_config
        from ganctl.models import build_models

        cfg = compose_run_config(overrides)
        self.torch, self.device, self.batch_size, self.z_dim = torch, device, batch_size, cfg.model.z_dim
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
        self.loader = DataLoader(
            PILDigits(images, transform), batch_size=batch_size, shuffle=True, drop_last=True, num_workers=0
        )
        self.batches = iter(self.loader)
        self.G, self.D = (m.to(device) for m in build_models(cfg.model, (1, 28, 28), 0))
        self.G_ema = copy.deepcopy(self.G).eval()
        self.augment = augment.policy(["translation"])
        self.g_opt = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.d_opt = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.updates, self.losses = 0, []

    def step(self):
        torch, n = self.torch, self.batch_size
        real = self.next_batch()[0].to(self.device)
        self.D.zero_grad()
        fake = self.G(torch.randn(n, self.z_dim, device=self.device))
        d_loss = (
            torch.relu(1 - self.D(self.augment(real))).mean()
            + torch.relu(1 + self.D(self.augment(fake.detach()))).mean()
        )
        if self.updates % 16 == 0:
            x = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.D(self.augment(x)).sum(), x, create_graph=True)
            d_loss = d_loss + 0.5 * 0.01 * 16 * grad.square().flatten(1).sum(1).mean()
        d_loss.backward()
        self.d_opt.step()
        self.updates += 1
        self.G.zero_grad()
        g_loss = -self.D(self.augment(self.G(torch.randn(n, self.z_dim, device=self.device)))).mean()
        g_loss.backward()
        self.g_opt.step()
        with torch.no_grad():
            beta = 0.5 ** (n / 10_000)
            for e, p in zip(self.G_ema.parameters(), self.G.parameters()):
                e.copy_(p.lerp(e, beta))
            for e, b in zip(self.G_ema.buffers(), self.G.buffers()):
                e.copy_(b)
        self.losses.append((d_loss.item(), g_loss.item()))


def ganctl_rate(overrides, run_dir: Path) -> float:
    """Steady-state steps/s of one in-process ganctl run, from its metrics.csv."""
    from ganctl.cli import compose_run_config
    from ganctl.commands.train import run

    FAST_PATHS.lines.clear()
    run(compose_run_config(overrides), run_dir)
    return common.steady_rate(run_dir / "metrics.csv")


class FastPathLines(logging.Handler):
    """Keeps the fast-path lines ganctl logs at start-up (in-process runs have no train.log)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def precision(self) -> str:
        """The precision the latest run's line names; fp32 where nothing was left to choose."""
        found = [re.search(r"precision=(\w+)", line) for line in self.lines[-1:]]
        return found[0].group(1) if found and found[0] else "fp32"


FAST_PATHS = FastPathLines()


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    device = common.setup(args)
    fast_path_log = logging.getLogger("ganctl.fast_path")
    fast_path_log.addHandler(FAST_PATHS)
    fast_path_log.setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="ganctl_bench_") as tmp:
        values = measure(args, device, Path(tmp))
    common.emit("train_speed", device, values)


def sizes(smoke: bool, device: str) -> dict:
    """(window, warm-up, repeats) of each interleaved pair; warm-up = ganctl's first log interval."""
    if smoke:
        return {
            "bce": (10, 5, 1),
            "g1d": (2, 2, 1),
            "conv": (1, 1, 1),
            "conv_batch": 8,
            "svhn_images": 256,
            "best": (2, 2, 1),
        }
    # One conv iteration takes ~1 s on the 2-core CPU, so the CPU window is short.
    conv = (100, 20, 3) if device.startswith("cuda") else (4, 2, 3)
    best = (300, 50, 3) if device.startswith("cuda") else (60, 20, 3)
    return {
        "bce": (500, 100, 5),
        "g1d": (50, 10, 5),
        "conv": conv,
        "conv_batch": 64,
        "svhn_images": 2048,
        "best": best,
    }


def interleaved(
    name: str,
    overrides: list[str],
    reference,
    window: int,
    warmup: int,
    repeats: int,
    tmp: Path,
    also: list[str] | None = None,
) -> tuple[list[float], list[float], list[float]]:
    """ganctl's rate and the reference's, repeat by repeat, after one warm-up of the reference;
    with `also`, a third rate of ganctl with those overrides added, in the same rounds."""
    for _ in range(warmup):
        reference.step()
    ours, theirs, more = [], [], []
    for r in range(repeats):
        ours.append(ganctl_rate(overrides, tmp / f"{name}_{r}"))
        theirs.append(reference.rate(window))
        if also:
            more.append(ganctl_rate(overrides + also, tmp / f"{name}_also_{r}"))
        common.note(
            f"  repeat {r + 1}: ganctl {ours[-1]:.2f}, reference {theirs[-1]:.2f}"
            + (f", ganctl with {' '.join(also)} {more[-1]:.2f}" if also else "")
            + " iterations/s"
        )
    return ours, theirs, more


def measure(args, device: str, tmp: Path) -> dict:
    """Every interleaved pair and the ganctl-only setups; returns the result line's values."""
    import torch

    size = sizes(args.smoke, device)
    window, warmup, repeats = size["bce"]
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

    window, warmup, repeats = size["g1d"]
    common.note(
        f"gaussian1d: {repeats} x {window} iterations (20 D + 20 G updates each) after {warmup} warm-up, "
        "ganctl / devnag's loop interleaved"
    )
    g1d = common.train_overrides("gaussian1d", warmup + window, warmup, device, ["seed=0"])
    ours, theirs, _ = interleaved("g1d", g1d, Gaussian1dReference(device), window, warmup, repeats, tmp)
    values.update(
        {
            **common.spread("g1d_ganctl", ours),
            **common.spread("g1d_reference", theirs),
            "g1d_ratio": statistics.median(ours) / statistics.median(theirs),
            **common.spread("gaussian1d", ours),
        }
    )

    window, warmup, repeats = size["conv"]
    batch = size["conv_batch"]
    svhn = common.fake_svhn(size["svhn_images"])
    svhn_root = tmp / "svhn_data"
    common.write_svhn_mat(svhn_root, "train", svhn)
    common.note(
        f"svhn_wgan_gp: {repeats} x {window} iterations (5 critic + 1 G updates each, batch {batch}) "
        f"after {warmup} warm-up, ganctl / dcgan-style loop interleaved, {len(svhn)} generated images"
    )
    conv = common.train_overrides(
        "svhn_wgan_gp",
        warmup + window,
        warmup,
        device,
        [f"dataset.root={svhn_root}", "dataset.split=train", f"trainer.batch_size={batch}"],
    )
    auto = ["trainer.precision=auto"]
    ours, theirs, lower = interleaved(
        "conv", conv, ConvReference(svhn, device, batch_size=batch), window, warmup, repeats, tmp, also=auto
    )
    conv_precision = FAST_PATHS.precision()  # the last run was the precision=auto one
    values.update(
        {
            **common.spread("conv_ganctl", ours),
            **common.spread("conv_reference", theirs),
            "conv_ratio": statistics.median(ours) / statistics.median(theirs),
            **common.spread("conv_auto", lower),
            "conv_auto_ratio": statistics.median(lower) / statistics.median(theirs),
            "conv_precision": conv_precision,
            **common.spread("svhn_wgan_gp", ours),
        }
    )

    window, warmup, repeats = size["best"]
    common.note(
        f"mnist_best: {repeats} x {window} steps after {warmup} warm-up, ganctl / dcgan-style loop / "
        "ganctl with precision=auto interleaved"
    )
    best = common.train_overrides("mnist_best", warmup + window, warmup, device, mnist)
    reference = RecipeReference(images, device, best)
    ours, theirs, lower = interleaved("best", best, reference, window, warmup, repeats, tmp, also=auto)
    values.update(
        {
            **common.spread("best_ganctl", ours),
            **common.spread("best_reference", theirs),
            "best_ratio": statistics.median(ours) / statistics.median(theirs),
            **common.spread("best_auto", lower),
            "best_auto_ratio": statistics.median(lower) / statistics.median(theirs),
            "best_precision": FAST_PATHS.precision(),
        }
    )

    warm, steps = (3, 3) if args.smoke else (50, 200)
    overrides = common.train_overrides("mnist_goodfellow", warm + steps, warm, device, mnist)
    rates = [ganctl_rate(overrides, tmp / f"mnist_goodfellow_{r}") for r in range(1 if args.smoke else 3)]
    common.note(f"mnist_goodfellow: {', '.join(f'{x:.2f}' for x in rates)} steps/s")
    values.update(common.spread("mnist_goodfellow", rates))
    values["real_data"] = int(real)
    values["cpu"] = common.cpu_model()
    values["torch"] = torch.__version__.split("+")[0]
    return values


if __name__ == "__main__":
    sys.exit(main())
