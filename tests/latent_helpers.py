"""Test-only helpers for the latent-cache tests: an encoder that can be made to die mid-build."""

from __future__ import annotations

import torch

from tests.training_fixtures import TinyLinearGenerator


class FlakyEncoder(torch.nn.Module):
    """Encodes like ``TinyLinearGenerator.encode`` and counts its calls; raises ``KeyboardInterrupt`` on call
    number ``fail_at`` (a build killed there)."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.inner, self.calls, self.fail_at = TinyLinearGenerator(), 0, fail_at

    def forward(self, images):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.inner.encode(images)
