"""R-LA / A-LA with a trained Glow on CIFAR-10 test images: round trip, accuracy table and a grid (paper Fig. 3).

    python -m benchmarks.flow_perturb_grid --glow benchmarks/checkpoints/glow-cifar10-cpu.safetensors \\
        --data $SEMAUG_DATA/cifar10-jpeg --out docs/images/flow_perturb_cifar10.png

Steps: (1) encode/decode ``--roundtrip`` test images and report the largest absolute error; (2) train a
small CNN for ``--classifier-steps`` iterations on the training folder (the classifier A-LA attacks; cached
in ``--work``); (3) accuracy of that CNN on clean, R-LA (l-inf eps 0.25) and A-LA (l2 eps 1.0, step 0.5,
3 steps) versions of ``--eval`` test images; (4) the grid: original | R-LA | A-LA | |R-LA - x| | |A-LA - x|,
differences rescaled per image to fill [0, 1].
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

import torch_semaug as ts
from torch_semaug._io import write_atomic
from torch_semaug.train.generator_run import load_images
from torch_semaug.train.quick import small_cnn

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def train_classifier(train_dir: str, steps: int, path: Path) -> nn.Module:
    model = small_cnn(10, width=16, batch_norm=True)
    model(torch.zeros(2, 3, 32, 32))  # materialise the lazy layer before loading or optimising
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    data = load_images(train_dir)
    loader = DataLoader(data, batch_size=128, shuffle=True, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    step = 0
    while step < steps:
        for images, labels in loader:
            flip = torch.rand(images.shape[0]) < 0.5  # horizontal flips: the only augmentation
            images[flip] = images[flip].flip(-1)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % 100 == 0:
                print(f"classifier step {step}/{steps}: loss {loss.item():.3f}", flush=True)
            if step >= steps:
                break
    write_atomic(path, lambda tmp: torch.save(model.state_dict(), tmp))
    return model.eval()


def grid_figure(rows: list[tuple[torch.Tensor, ...]], titles: list[str], names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), len(titles), figsize=(1.4 * len(titles), 1.4 * len(rows)))
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            ax = axes[r, c]
            ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(names[r], fontsize=7)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glow", required=True, help="Glow checkpoint (.safetensors)")
    parser.add_argument("--data", required=True, help="cifar10-jpeg folder with train/ and test/")
    parser.add_argument("--out", type=Path, required=True, help="grid PNG")
    parser.add_argument("--work", type=Path, default=Path("runs/flow_grid"), help="classifier cache")
    parser.add_argument("--classifier-steps", type=int, default=500)
    parser.add_argument("--roundtrip", type=int, default=1000, help="test images for the round-trip check")
    parser.add_argument("--eval", type=int, default=500, help="test images for the accuracy table")
    parser.add_argument("--rows", type=int, default=8)
    args = parser.parse_args(argv)
    start = time.time()
    glow = ts.Glow.load(args.glow)
    test = load_images(f"{args.data}/test")

    worst = 0.0
    loader = DataLoader(Subset(test, range(args.roundtrip)), batch_size=100)
    with torch.no_grad():
        for images, _ in loader:
            worst = max(worst, float((glow.decode(glow.encode(images)) - images).abs().max()))
    print(f"round trip on {args.roundtrip} CIFAR-10 test images: max |decode(encode(x)) - x| = {worst:.2e}")

    model = train_classifier(f"{args.data}/train", args.classifier_steps, args.work / "small_cnn_2conv.pt")
    rla = ts.FlowPerturb(glow, mode="random", eps=0.25, norm="linf", rng=torch.Generator().manual_seed(0))
    ala = ts.FlowPerturb(glow, mode="adversarial", eps=1.0, norm="l2", step_size=0.5, steps=3, model=model)
    # spread over the test set (ImageFolder sorts by class): every class appears in the first rows
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: args.eval]
    correct = {"clean": 0, "R-LA": 0, "A-LA": 0}
    kept: list[tuple[torch.Tensor, ...]] = []
    names: list[str] = []
    for chunk in order.split(100):
        images = torch.stack([test[int(i)][0] for i in chunk])
        labels = torch.tensor([test[int(i)][1] for i in chunk])
        random_out = rla(images)
        adv_out, _ = ala(images, labels)
        with torch.no_grad():
            for key, batch in (("clean", images), ("R-LA", random_out), ("A-LA", adv_out)):
                correct[key] += int((model(batch).argmax(1) == labels).sum())
        for x, r, a, y in zip(images, random_out, adv_out, labels):
            if len(kept) < args.rows:
                dr, da = (r - x).abs(), (a - x).abs()
                kept.append((x, r, a, dr / dr.max().clamp_min(1e-8), da / da.max().clamp_min(1e-8)))
                names.append(CLASSES[int(y)])
    total = len(order)
    print(f"small CNN ({args.classifier_steps} Adam steps, batch 128) accuracy on {total} test images:")
    print("| images | accuracy |\n|---|---:|")
    for key, value in correct.items():
        print(f"| {key} | {100 * value / total:.1f} % |")
    titles = ["original", "R-LA (linf .25)", "A-LA (l2 1.0)", "|R-LA - x| resc.", "|A-LA - x| resc."]
    grid_figure(kept, titles, names, args.out)
    print(f"wrote {args.out} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
