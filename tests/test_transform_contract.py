"""The contract every transform keeps (docs/architecture.md, "The transform contract").

Each test runs once per entry of ``contract_cases.TRANSFORM_CASES``.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from tests.contract_cases import NUM_CLASSES, TRANSFORM_CASES, TransformCase, make_classifier

CASES = pytest.mark.parametrize("case", TRANSFORM_CASES, ids=[c.id for c in TRANSFORM_CASES])


def _run(case: TransformCase, transform, images, labels):
    kwargs = {} if case.latents is None else {"latents": case.latents(images)}
    return transform(images, labels, **kwargs)


def _setup(case: TransformCase, batch: int = 5, p: float = 1.0, seed: int = 0, dtype=torch.float32):
    model = make_classifier(case.image_shape[0]).to(dtype)
    transform = case.make(p, torch.Generator().manual_seed(seed), model)
    images = case.images(batch, seed, dtype)
    labels = torch.arange(batch) % NUM_CLASSES
    return transform, model, images, labels


@CASES
@pytest.mark.parametrize("batch", [1, 5])
def test_smoke_shapes_and_labels(case: TransformCase, batch: int) -> None:
    transform, _, images, labels = _setup(case, batch)
    out, out_labels = _run(case, transform, images, labels)
    assert out.shape == images.shape and out.dtype == images.dtype and out.device == images.device
    assert torch.isfinite(out).all()
    assert torch.equal(out_labels, labels)


@CASES
def test_p0_returns_the_input_untouched(case: TransformCase) -> None:
    transform, model, images, labels = _setup(case, p=0.0)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    out, _ = _run(case, transform, images, labels)
    assert torch.equal(out, images)
    assert not calls, "examples not selected must cost nothing"


@CASES
def test_p1_changes_every_example(case: TransformCase) -> None:
    transform, _, images, labels = _setup(case, batch=4)
    out, _ = _run(case, transform, images, labels)
    changed = (out - images).flatten(1).abs().amax(1) > 1e-6
    assert changed.all(), f"unchanged examples: {(~changed).nonzero().flatten().tolist()}"


@CASES
def test_partial_p_keeps_unselected_examples_exact(case: TransformCase) -> None:
    transform, _, images, labels = _setup(case, batch=16, p=0.5, seed=3)
    out, _ = _run(case, transform, images, labels)
    same = (out == images).flatten(1).all(1)
    assert same.any() and (~same).any(), "p=0.5 on 16 examples should transform some and keep some"


@CASES
def test_dtype_float64_preserved(case: TransformCase) -> None:
    transform, _, images, labels = _setup(case, batch=3, dtype=torch.float64)
    out, _ = _run(case, transform, images, labels)
    assert out.dtype == torch.float64


@CASES
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_cuda_preserved(case: TransformCase) -> None:
    transform, model, images, labels = _setup(case, batch=3)
    model.cuda()
    out, _ = _run(case, transform, images.cuda(), labels.cuda())
    assert out.device.type == "cuda"


@CASES
def test_seeded_rng_is_deterministic(case: TransformCase) -> None:
    outputs = []
    for _ in range(2):
        transform, _, images, labels = _setup(case, batch=6, p=0.7, seed=11)
        outputs.append(_run(case, transform, images, labels)[0])
    assert torch.equal(outputs[0], outputs[1])


@CASES
def test_pickle_round_trip(case: TransformCase) -> None:
    transform, _, images, labels = _setup(case, batch=3)
    clone = pickle.loads(pickle.dumps(transform))
    assert repr(clone) == repr(transform)
    expected = _run(case, copy.deepcopy(transform), images, labels)[0]
    assert torch.allclose(_run(case, clone, images, labels)[0], expected, atol=1e-6)


@CASES
def test_repr_is_one_line_without_the_generator(case: TransformCase) -> None:
    transform, _, _, _ = _setup(case)
    text = repr(transform)
    assert "\n" not in text and text.startswith(type(transform).__name__ + "(")
    assert "Conv2d" not in text and "Linear" not in text and "BatchNorm" not in text


@CASES
def test_state_dict_carries_no_generator_or_model_weights(case: TransformCase) -> None:
    transform, _, _, _ = _setup(case)
    keys = list(transform.state_dict())
    assert not any(k.startswith(("generator", "model")) for k in keys), keys
    assert not list(transform.parameters())


@CASES
def test_composes_in_torchvision_v2(case: TransformCase) -> None:
    transform, _, images, labels = _setup(case, batch=4)
    inputs = (images, labels) if case.latents is None else (images, labels, case.latents(images))
    for pipeline in (v2.Compose([transform]), v2.RandomChoice([transform])):
        out, out_labels = pipeline(*inputs)
        assert out.shape == images.shape and torch.equal(out_labels, labels)


@CASES
def test_tv_tensor_image_type_preserved(case: TransformCase) -> None:
    transform, _, images, labels = _setup(case, batch=2)
    out, _ = _run(case, transform, tv_tensors.Image(images), labels)
    assert isinstance(out, tv_tensors.Image)


@CASES
def test_per_sample_call(case: TransformCase) -> None:
    transform, _, images, labels = _setup(case, batch=1)
    if case.adversarial:
        with pytest.raises(ValueError, match="per batch"):
            transform(images[0], int(labels[0]))
        return
    latent = None if case.latents is None else case.latents(images)[0]
    out, label = transform(images[0], 3, latent)
    assert out.shape == images[0].shape and label == 3


@CASES
def test_bad_input_errors_name_the_argument(case: TransformCase) -> None:
    transform, _, images, labels = _setup(case, batch=3)
    with pytest.raises(ValueError, match="images"):
        transform(images[0, 0], labels)  # rank 2
    with pytest.raises(TypeError, match="images"):
        transform((images * 255).to(torch.uint8), labels)
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="images"):
        transform(bad, labels)
    with pytest.raises(ValueError, match="labels"):
        transform(images, labels[:2])
    with pytest.raises(TypeError, match="images"):
        transform([images], labels)
    if case.latents is not None:
        with pytest.raises(ValueError, match="latents"):
            transform(images, labels, latents=case.latents(images)[:, :1])
    if case.adversarial:
        with pytest.raises(ValueError, match="labels"):
            transform(images, torch.full_like(labels, NUM_CLASSES + 3))
        unbound = case.make(1.0, None, None)
        with pytest.raises(ValueError, match="model"):
            _run(case, unbound, images, labels)


@CASES
def test_classifier_guard_invariants(case: TransformCase) -> None:
    transform, model, images, labels = _setup(case, batch=4)
    model.train()
    model.features[1].training = True
    model.head[1].eval()  # a mixed-mode model: each submodule's flag must come back as it was
    model(images).sum().backward()  # populate .grad
    model.features[0].bias.requires_grad_(False)
    before = {
        "modes": [m.training for m in model.modules()],
        "flags": [p.requires_grad for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    }
    _run(case, transform, images, labels)
    assert [m.training for m in model.modules()] == before["modes"]
    assert [p.requires_grad for p in model.parameters()] == before["flags"]
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), before["buffers"], strict=True))
    for param, grad in zip(model.parameters(), before["grads"], strict=True):
        assert (param.grad is None) if grad is None else torch.equal(param.grad, grad)
