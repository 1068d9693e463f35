#!/usr/bin/env bash
# The same training script on several GPUs (or CPU processes) with accelerate. Each rank draws its own
# transform randomness (seed + rank); the generator stays frozen on every rank and is never DDP-wrapped;
# validation metrics are gathered with gather_for_metrics. -b is the batch size per process.
set -euo pipefail
DATA=${SEMAUG_DATA:-data}
GLOW=${GLOW:-checkpoints/glow-cifar10.safetensors}

# 4 GPUs, bf16 autocast (the generator is loaded on every rank, frozen, outside accelerator.prepare):
if command -v nvidia-smi > /dev/null && [ -f "$GLOW" ]; then
    accelerate launch --multi_gpu --num_processes 4 --mixed_precision bf16 -m torch_semaug.train \
        --dataset torch/cifar10 --data-root "$DATA" --model resnet18 -b 64 --epochs 30 --lr 0.1 --amp \
        --semaug flow_perturb --semaug-generator "$GLOW" --semaug-mode adversarial \
        --semaug-eps 1.0 --semaug-step-size 0.5 --semaug-steps 3 --semaug-kwargs norm=l2
fi

# Several CPU processes: on a machine without GPUs the same `accelerate launch --multi_gpu` starts CPU
# processes (gloo); without --multi_gpu (or with --cpu) accelerate starts one. `torchrun --standalone
# --nproc_per_node 2 -m torch_semaug.train ...` does the same. Pixel PGD with the identity generator on 2 %
# of CIFAR-10, runnable anywhere:
python -c "from torch_semaug.generators import IdentityGenerator, save_generator; \
save_generator(IdentityGenerator((3, 32, 32)), 'identity32.safetensors')"
OMP_NUM_THREADS=1 accelerate launch --multi_gpu --num_processes 2 -m torch_semaug.train --device cpu \
    --dataset torch/cifar10 --data-root "$DATA" --train-subset 0.02 --model resnet18 -b 32 --epochs 1 -j 1 \
    --output runs --experiment multi-cpu-demo \
    --semaug adversarial_latent_attack --semaug-generator identity32.safetensors \
    --semaug-eps 0.0314 --semaug-step-size 0.0078 --semaug-steps 2
