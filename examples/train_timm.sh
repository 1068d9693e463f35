#!/usr/bin/env bash
# timm-style classifier training with a semantic transform: timm's flag names plus --semaug*.
# The transform runs after the DataLoader, on the device, where timm applies mixup_fn.
# Run from anywhere with torch_semaug installed; data are read from $SEMAUG_DATA (nothing is downloaded).
set -euo pipefail
DATA=${SEMAUG_DATA:-data}
GLOW=${GLOW:-checkpoints/glow-cifar10.safetensors}   # a Glow trained with `semaug train-generator glow`

# Baseline without generative model: pixel-space PGD adversarial training (identity generator).
python -c "from torch_semaug.generators import IdentityGenerator, save_generator; \
save_generator(IdentityGenerator((3, 32, 32)), 'identity32.safetensors')"
semaug train --dataset torch/cifar10 --data-root "$DATA" --model resnet18 -b 128 --epochs 30 \
    --opt sgd --lr 0.1 --weight-decay 5e-4 --sched cosine --warmup-epochs 1 --smoothing 0.1 --seed 0 \
    --output runs --experiment cifar10-resnet18-pgd \
    --semaug adversarial_latent_attack --semaug-generator identity32.safetensors \
    --semaug-eps 0.0314 --semaug-step-size 0.0078 --semaug-steps 3 --semaug-p 0.5

# Flow Adversarial-LA (Yüksel et al.: l2, eps 1.0, alpha 0.5, k 3) on 5 % of CIFAR-10 (official first 2,500).
if [ -f "$GLOW" ]; then
    semaug train --dataset torch/cifar10 --data-root "$DATA" --train-subset 0.05 --model resnet18 -b 128 \
        --epochs 100 --opt sgd --lr 0.05 --weight-decay 5e-4 --sched cosine --seed 0 --amp \
        --output runs --experiment cifar10-5pct-resnet18-ala \
        --semaug flow_perturb --semaug-generator "$GLOW" --semaug-mode adversarial \
        --semaug-eps 1.0 --semaug-step-size 0.5 --semaug-steps 3 --semaug-kwargs norm=l2
fi
