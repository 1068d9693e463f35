"""Attack a batch through a generator's latent space, the way a training loop would.

With the identity generator the latent is the image, so this is pixel-space PGD; swap in a StyleGAN2 or a
Glow (torch_semaug.generators) and the same transform moves images along the generator's manifold.

    python examples/quickstart.py
"""

import torch
import torchvision
from torch import nn

import torch_semaug as ts

torch.manual_seed(0)
classifier = torchvision.models.resnet18(num_classes=10)
images = torch.rand(16, 3, 32, 32)            # a batch as the DataLoader gives it, in [0, 1]
labels = torch.randint(0, 10, (16,))

generator = ts.IdentityGenerator(image_shape=(3, 32, 32), image_range=(0.0, 1.0))
attack = ts.create(
    "adversarial_latent_attack", generator=generator, model=classifier,
    eps=8 / 255, step_size=2 / 255, steps=7, early_stop=True,
)
print(attack)

adversarial, labels = attack(images, labels)  # the classifier comes back exactly as it was
with torch.no_grad():
    clean_acc = (classifier.eval()(images).argmax(1) == labels).float().mean()
    adv_acc = (classifier(adversarial).argmax(1) == labels).float().mean()
print(f"max |change| = {(adversarial - images).abs().max():.4f} (eps = {8 / 255:.4f})")
print(f"accuracy clean {clean_acc:.2f} -> under attack {adv_acc:.2f}")
loss = nn.functional.cross_entropy(classifier.train()(adversarial), labels)  # train on the variants
loss.backward()
