"""CelebA attribute benchmark of the AdvMix paper (Gowal et al., CVPR 2020), Tables 3 and 4.

For each attribute (Smiling and three others, ``--attributes``), a binary classifier is trained with
nominal training, mixup, Cutout, CutMix, pixel-space adversarial training (AT), RandMix and AdvMix, and
evaluated on clean test images and under an AdvMix perturbation (the paper's evaluation budget: 10
restarts x 20 steps) of the test images through the same StyleGAN2 (``--generator``, a
``semaug train-generator stylegan2`` checkpoint trained on CelebA at the generator's resolution).

Images come from torchvision's ``CelebA(root, download=False)`` (``ROOT/celeba/img_align_celeba/`` and
the six ``list_*.txt`` / ``identity_CelebA.txt`` files), centre-cropped and resized to the generator's
resolution. ``--no-md5`` skips torchvision's checksum of the text files (the tests' synthetic copy in
CelebA's folder format needs it; a real download passes the check). CelebA is not on this machine, so
only the smoke scale has been run here. Example::

    python -m benchmarks.celeba --scale cpu --data-root DATA --generator celeba64.safetensors
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import torch_semaug as ts
from benchmarks._bench import (
    SCALES,
    add_run_arguments,
    parse_run_args,
    stack,
    table,
    write_results,
)
from torch_semaug.train.quick import accuracy, invert, small_cnn, train

METHODS = ("nominal", "mixup:0.2", "cutout", "cutmix", "pixel_at", "randmix", "advmix")
ATTRIBUTES = ("Smiling", "Mouth_Slightly_Open", "High_Cheekbones", "Wearing_Lipstick")
SETTINGS = {
    "smoke": dict(train=16, test=8, steps=2, batch=8, encoder="optimize:2", adv_steps=1, adv_restarts=1,
                  eval_steps=1, eval_restarts=1, at_steps=1),
    "cpu": dict(train=4000, test=500, steps=800, batch=64, encoder="optimize:50", adv_steps=3, adv_restarts=3,
                eval_steps=10, eval_restarts=5, at_steps=3),
    "paper": dict(train=None, test=None, steps=30000, batch=128, encoder="optimize:200", adv_steps=7,
                  adv_restarts=5, eval_steps=20, eval_restarts=10, at_steps=7),
}


def celeba(root: str, split: str, resolution: int, check_md5: bool):
    """torchvision's CelebA with attribute targets, images in [0, 1] at ``resolution``."""
    from torchvision.datasets import CelebA
    from torchvision.transforms import v2

    class _CelebA(CelebA):
        def _check_integrity(self) -> bool:  # presence only: the md5s are those of the real release
            if check_md5:
                return super()._check_integrity()
            return os.path.isdir(os.path.join(self.root, self.base_folder, "img_align_celeba"))

    transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.CenterCrop(178),
                            v2.Resize(resolution, antialias=True)])
    return _CelebA(root, split=split, target_type="attr", transform=transform, download=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="smoke")
    parser.add_argument("--data-root", required=True, help="folder holding celeba/ (torchvision's layout)")
    parser.add_argument("--generator", required=True, help="StyleGAN2 trained on CelebA")
    parser.add_argument("--attributes", default=",".join(ATTRIBUTES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--no-md5", action="store_true", help="skip torchvision's md5 check of the list files")
    add_run_arguments(parser)
    args = parse_run_args(parser, argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start, s = time.time(), SETTINGS[args.scale]
    generator = ts.StyleGAN2.load(args.generator)
    train_set = celeba(args.data_root, "train", generator.resolution, not args.no_md5)
    test_set = celeba(args.data_root, "test", generator.resolution, not args.no_md5)
    names = list(train_set.attr_names)
    attributes = args.attributes.split(",")
    for attribute in attributes:
        if attribute not in names:
            raise ValueError(f"attributes: {attribute!r} is not a CelebA attribute; known: {names}")
    train_x, train_attr = stack(train_set, s["train"])
    test_x, test_attr = stack(test_set, s["test"])
    train_w = invert(generator, train_x, s["encoder"])
    test_w = invert(generator, test_x, s["encoder"])
    rows = []
    for attribute in attributes:
        column = names.index(attribute)
        y, test_y = train_attr[:, column], test_attr[:, column]
        for method in args.methods.split(","):
            print(f"{attribute}: {method}", flush=True)
            model = train(small_cnn(2), method, train_x, y, steps=s["steps"], batch=s["batch"], seed=args.seed,
                          num_classes=2, latents=train_w, generator=generator, at_eps=8 / 255,
                          at_steps=s["at_steps"], adv_steps=s["adv_steps"], adv_restarts=s["adv_restarts"],
                          desc=f"{attribute} {method}")
            attack = ts.LatentMix(generator, model=model, mode="adversarial", steps=s["eval_steps"],
                                  restarts=s["eval_restarts"], rng=torch.Generator().manual_seed(args.seed))
            rows.append([attribute, method, accuracy(model, test_x, test_y),
                         accuracy(model, test_x, test_y, attack=attack, latents=test_w)])
    sections = [f"Scale `{args.scale}`: {len(train_x)} training / {len(test_x)} test images at "
                f"{generator.resolution} px, {s['steps']} Adam steps of {s['batch']}, W+ by `{s['encoder']}`; "
                f"AdvMix training {s['adv_restarts']} x {s['adv_steps']}, evaluation {s['eval_restarts']} x "
                f"{s['eval_steps']}; AT l-inf 8/255.", "",
                "## Tables 3/4: clean accuracy and accuracy under AdvMix (%)", "",
                table(["attribute", "method", "clean", "under AdvMix"], rows), ""]
    write_results(args.out / f"celeba{'' if args.scale == 'cpu' else '_' + args.scale}.md",
                  "CelebA attributes (AdvMix paper)", start, sections,
                  ["The paper's numbers are in its Tables 3 and 4 (not copied here: run at scale `paper`)."])


if __name__ == "__main__":
    main()
