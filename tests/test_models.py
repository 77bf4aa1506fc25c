"""The model zoo: reference parameter counts, the pieces checked against NumPy,
train/eval behaviour of dropout, stochastic depth and BatchNorm, precision."""

from __future__ import annotations

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra.utils import instantiate

from jaxclf.describe import describe_model
from jaxclf.models.backbone import DropPath, SelfAttention, choose_attention
from jaxclf.models.group_batch_norm import GroupBatchNorm
from jaxclf.models.mlp import Linear
from jaxclf.models.modalities import Patch, sincos2d_embedding
from jaxclf.models.resnet import ResNet
from jaxclf.models.vit import ViT
from jaxclf.train_state import abstract_variables, init_variables

IMAGENET = ("data=imagenet2012", "~recipe")  # the architectures as published, without a recipe's changes


def _num_params(variables) -> int:
    return sum(int(leaf.size) for leaf in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize(
    "model,expected",
    [
        # timm's vit_*_patch16_224 and torchvision's resnet*, 1,000 classes.
        ("vit_ti16", 5_717_416),
        ("vit_s16", 22_050_664),
        ("vit_b16", 86_567_656),
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
    ],
)
def test_parameter_counts_match_the_reference_implementations(compose, model, expected):
    cfg = compose([f"model={model}", *IMAGENET])
    variables = abstract_variables(instantiate(cfg.model), tuple(cfg.data.image_shape))
    assert _num_params(variables) == expected


def test_a_representation_size_adds_a_tanh_pre_logits_layer():
    images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 1)), jnp.float32)
    plain = ViT(num_classes=10, patch_size=4, hidden_size=16, depth=1, num_heads=2)
    with_layer = plain.clone(representation_size=6)
    shapes = abstract_variables(with_layer, (8, 8, 1))
    head = shapes["params"]["head"]
    assert head["pre_logits"]["kernel"].shape == (16, 6) and head["dense"]["kernel"].shape == (6, 10)
    extra = 16 * 6 + 6 + (6 - 16) * 10  # the pre-logits layer, and a narrower classifier
    assert _num_params(shapes) - _num_params(abstract_variables(plain, (8, 8, 1))) == extra

    @jax.jit
    def logits_and_head(images):
        # A pre-logits layer with zero kernel and bias 3 outputs tanh(3) whatever the image.
        variables = init_variables(with_layer, (8, 8, 1), jax.random.key(0))
        head = variables["params"]["head"]
        constant = {"kernel": jnp.zeros((16, 6)), "bias": jnp.full(6, 3.0)}
        params = {**variables["params"], "head": {**head, "pre_logits": constant}}
        return with_layer.apply({**variables, "params": params}, images), head["dense"]

    logits, dense = logits_and_head(images)
    expected = np.tanh(3.0) * np.asarray(dense["kernel"]).sum(0) + np.asarray(dense["bias"])
    np.testing.assert_allclose(logits, np.broadcast_to(expected, (2, 10)), rtol=1e-5, atol=1e-6)


def test_batch_norm_statistics_are_model_state_not_parameters(compose):
    cfg = compose(["model=resnet18", *IMAGENET])
    variables = abstract_variables(instantiate(cfg.model), (224, 224, 3))
    assert set(variables) == {"params", "batch_stats"}
    # A running mean and variance per channel of every BatchNorm: 4,800
    # channels in torchvision's ResNet-18, whose weights and biases are 9,600 parameters.
    assert sum(leaf.size for leaf in jax.tree.leaves(variables["batch_stats"])) == 2 * 4_800


def test_patch_embedding_is_a_linear_map_of_each_patch():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 8, 12, 3)).astype(np.float32)
    patch = Patch(patch_size=4, hidden_size=5, posemb="learned", pool="gap")
    variables = patch.init(jax.random.key(0), images)
    params = variables["params"]
    tokens = np.asarray(patch.apply(variables, images))
    # Row-major patches: [B, 2, 4, 3, 4, 3] -> [B, 2*3 patches, 4*4*3 pixels].
    patches = images.reshape(2, 2, 4, 3, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 6, 48)
    kernel = np.asarray(params["embedding"]["kernel"]).reshape(48, 5)
    expected = patches @ kernel + np.asarray(params["embedding"]["bias"]) + np.asarray(params["position_embedding"])
    np.testing.assert_allclose(tokens, expected, rtol=1e-5, atol=1e-5)


def test_class_token_comes_first_and_learned_position_embeddings_include_it():
    patch = Patch(patch_size=2, hidden_size=8, posemb="learned", pool="cls")
    variables = patch.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
    tokens = patch.apply(variables, jnp.zeros((3, 4, 4, 1)))
    assert tokens.shape == (3, 1 + 4, 8)
    params = variables["params"]
    expected = params["class_token"][0, 0] + params["position_embedding"][0, 0]
    np.testing.assert_allclose(tokens[:, 0], np.broadcast_to(expected, (3, 8)), atol=1e-6)


def test_sincos2d_embedding_matches_its_closed_form():
    height, width, dim = 3, 4, 16
    quarter = dim // 4
    expected = np.zeros((height * width, dim))
    for y in range(height):
        for x in range(width):
            for k in range(quarter):
                omega = 10_000.0 ** (-k / (quarter - 1))
                row = y * width + x
                expected[row, k] = np.sin(x * omega)
                expected[row, quarter + k] = np.cos(x * omega)
                expected[row, 2 * quarter + k] = np.sin(y * omega)
                expected[row, 3 * quarter + k] = np.cos(y * omega)
    np.testing.assert_allclose(sincos2d_embedding(height, width, dim)[0], expected, atol=1e-6)


def test_self_attention_matches_numpy():
    rng = np.random.default_rng(1)
    tokens = rng.normal(size=(2, 5, 8)).astype(np.float32)
    attention = SelfAttention(num_heads=2)
    variables = attention.init(jax.random.key(0), tokens)
    out = np.asarray(attention.apply(variables, tokens))

    p = jax.tree.map(np.asarray, variables["params"])
    qkv = np.einsum("btd,dsnh->btsnh", tokens, p["qkv"]["kernel"]) + p["qkv"]["bias"]
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, T, heads, 4]
    scores = np.einsum("bqnh,bknh->bnqk", q, k) / np.sqrt(4)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    attended = np.einsum("bnqk,bknh->bqnh", weights, v)
    expected = np.einsum("bqnh,nhd->bqd", attended, p["out"]["kernel"]) + p["out"]["bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("requested", "platform", "dtype", "head_size", "chosen"),
    [
        ("auto", "gpu", jnp.bfloat16, 64, "cudnn"),
        ("auto", "gpu", jnp.float16, 128, "cudnn"),
        ("auto", "gpu", jnp.float32, 64, "xla"),  # cuDNN's flash attention is for 16-bit activations
        ("auto", "gpu", jnp.bfloat16, 12, "xla"),  # not a multiple of 8
        ("auto", "gpu", jnp.bfloat16, 136, "xla"),  # above 128
        ("auto", "cpu", jnp.bfloat16, 64, "xla"),
        ("auto", "tpu", jnp.bfloat16, 64, "xla"),
        ("xla", "gpu", jnp.bfloat16, 64, "xla"),
        ("cudnn", "gpu", jnp.bfloat16, 64, "cudnn"),
    ],
)
def test_attention_takes_cudnn_where_it_can_serve(requested, platform, dtype, head_size, chosen):
    assert choose_attention(requested, platform, dtype, head_size) == chosen


@pytest.mark.parametrize(
    ("platform", "dtype", "head_size", "reason"),
    [("cpu", jnp.bfloat16, 64, "GPUs only"), ("gpu", jnp.float32, 64, "float32"), ("gpu", jnp.float16, 12, "is 12")],
)
def test_cudnn_attention_where_it_cannot_serve_is_a_one_line_error(platform, dtype, head_size, reason):
    with pytest.raises(ValueError, match=f"attention_impl=cudnn cannot be used: .*{reason}.*use attention_impl=auto"):
        choose_attention("cudnn", platform, dtype, head_size)


@pytest.mark.parametrize(
    ("platform", "dtype", "implementation"), [("gpu", jnp.bfloat16, "cudnn"), ("cpu", jnp.bfloat16, "xla")]
)
def test_the_vit_asks_jax_for_the_chosen_attention(monkeypatch, platform, dtype, implementation):
    """On a (pretended) GPU with bfloat16 the ViT's attention calls cuDNN's kernel."""
    asked = []
    attention = jax.nn.dot_product_attention

    def recording(*args, implementation=None, **kwargs):
        asked.append(implementation)
        return attention(*args, implementation="xla", **kwargs)  # runs here, on the CPU

    monkeypatch.setattr(jax, "default_backend", lambda: platform)
    monkeypatch.setattr(jax.nn, "dot_product_attention", recording)
    model = _vit(num_classes=10, patch_size=4, hidden_size=64, depth=2, num_heads=2, dtype=dtype)
    init_variables(model, (8, 8, 1), jax.random.key(0))
    assert asked and set(asked) == {implementation}


def test_drop_path_drops_whole_examples_and_rescales_the_rest():
    branch = jnp.ones((4096, 3, 2))
    dropped = np.asarray(DropPath(0.25).apply({}, branch, train=True, rngs={"dropout": jax.random.key(0)}))
    per_example = dropped.reshape(4096, -1)
    assert set(np.unique(per_example).tolist()) <= {0.0, np.float32(1 / 0.75).item()}
    assert np.all(per_example == per_example[:, :1])  # all or nothing per example
    assert abs(np.mean(per_example[:, 0] == 0) - 0.25) < 0.03
    np.testing.assert_array_equal(DropPath(0.25).apply({}, branch, train=False), branch)


def _vit(**overrides) -> ViT:
    settings = dict(num_classes=10, patch_size=2, hidden_size=16, depth=2, num_heads=2, posemb="sincos2d", pool="gap")
    return ViT(**{**settings, **overrides})


@pytest.mark.parametrize(
    "model",
    [
        _vit(dropout=0.5, drop_path=0.5),
        ResNet(num_classes=10, stage_sizes=(1, 1), stem="cifar", width=4),
    ],
    ids=["vit", "resnet"],
)
def test_evaluation_is_deterministic_and_training_is_not(model):
    images = jnp.asarray(np.random.default_rng(2).normal(size=(8, 8, 8, 1)), jnp.float32)
    variables = jax.jit(functools.partial(init_variables, model, (8, 8, 1)))(jax.random.key(0))
    evaluate = jax.jit(functools.partial(model.apply, train=False))
    first = evaluate(variables, images)
    second = evaluate(variables, images)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))  # bitwise

    @jax.jit
    def train_logits_of(rng):
        return model.apply(variables, images, train=True, rngs={"dropout": rng}, mutable=["batch_stats"])[0]

    def train_logits(seed):
        return np.asarray(train_logits_of(jax.random.key(seed)))

    if isinstance(model, ViT):  # dropout and stochastic depth draw new masks each step
        assert not np.array_equal(train_logits(1), train_logits(2))
    else:  # BatchNorm: batch statistics in training, running ones in evaluation
        assert not np.allclose(train_logits(1), np.asarray(first))


@pytest.mark.slow  # ~10 s on 2 cores
def test_batch_norm_uses_batch_statistics_in_training_and_updates_running_ones():
    model = ResNet(num_classes=3, stage_sizes=(1,), stem="cifar", width=4, batch_norm_momentum=0.9)
    images = jnp.asarray(np.random.default_rng(3).normal(loc=2.0, size=(16, 4, 4, 1)), jnp.float32)
    variables = init_variables(model, (4, 4, 1), jax.random.key(0))
    _, updated = model.apply(variables, images, train=True, mutable=["batch_stats"])

    # The stem's statistics, against NumPy on the stem convolution's output.
    kernel = np.asarray(variables["params"]["stem_conv"]["kernel"])  # [3, 3, 1, 4]
    padded = np.pad(np.asarray(images), ((0, 0), (1, 1), (1, 1), (0, 0)))
    conv = sum(padded[:, dy : dy + 4, dx : dx + 4, :] @ kernel[dy, dx] for dy in range(3) for dx in range(3))
    stats = updated["batch_stats"]["stem_norm"]
    np.testing.assert_allclose(stats["mean"], 0.1 * conv.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * conv.var(axis=(0, 1, 2)), rtol=1e-4)

    # In evaluation, one example's logits do not depend on the rest of the batch.
    alone = model.apply(variables, images[:1], train=False)
    batched = model.apply(variables, images, train=False)[:1]
    np.testing.assert_allclose(alone, batched, rtol=1e-5, atol=1e-6)


def test_group_batch_norm_normalises_each_group_by_its_own_statistics():
    """Against NumPy: each 4 examples normalised by their own mean and (biased) variance; the
    running averages move towards the groups' mean statistics."""
    x = np.random.default_rng(5).normal(loc=3.0, scale=2.0, size=(12, 3, 3, 2)).astype(np.float32)
    norm = GroupBatchNorm(group_size=4, momentum=0.9)
    variables = norm.init(jax.random.key(0), x)
    y, updated = norm.apply(variables, x, mutable=["batch_stats"])
    groups = x.reshape(3, 4, 3, 3, 2)
    mean, var = groups.mean(axis=(1, 2, 3), keepdims=True), groups.var(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(y, ((groups - mean) / np.sqrt(var + 1e-5)).reshape(x.shape), rtol=1e-4, atol=1e-5)
    stats = updated["batch_stats"]
    np.testing.assert_allclose(stats["mean"], 0.1 * mean.reshape(3, 2).mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * var.reshape(3, 2).mean(0), rtol=1e-5)


def test_group_batch_norm_over_the_whole_batch_is_flax_batch_norm():
    x = jnp.asarray(np.random.default_rng(6).normal(size=(8, 5, 5, 3)), jnp.float32)
    ours = GroupBatchNorm(group_size=8, momentum=0.9)
    flax_norm = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
    variables = flax_norm.init(jax.random.key(0), x)  # the same variables serve both
    for train in (True, False):
        expected = flax_norm.clone(use_running_average=not train).apply(variables, x, mutable=["batch_stats"])
        got = ours.clone(use_running_average=not train).apply(variables, x, mutable=["batch_stats"])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), got, expected)


def test_a_batch_norm_group_that_does_not_tile_the_batch_is_a_one_line_config_error(compose):
    from jaxclf.config.validation import check_values
    from jaxclf.errors import ConfigError

    cfg = compose(["model=resnet18", "data.batch_size=96", "+model.batch_norm_group_size=64"])
    with pytest.raises(ConfigError, match=r"^model\.batch_norm_group_size=64 is not valid; .*\(96\)$"):
        check_values(cfg)


@pytest.mark.parametrize(
    "model", [_vit(), ResNet(num_classes=10, stage_sizes=(1,), stem="cifar", width=4)], ids=["vit", "resnet"]
)
def test_bfloat16_compute_keeps_float32_parameters_and_logits(model):
    model = model.clone(dtype=jnp.bfloat16)
    variables = jax.jit(functools.partial(init_variables, model, (8, 8, 1)))(jax.random.key(0))
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    logits = jax.jit(functools.partial(model.apply, train=False))(variables, jnp.ones((2, 8, 8, 1)))
    assert logits.dtype == jnp.float32 and logits.shape == (2, 10)
    # Inside, the layers compute in bfloat16: every Dense and Conv output.
    images = jnp.ones((2, 8, 8, 1))
    capture = functools.partial(
        model.apply, train=False, capture_intermediates=_is_dense_or_conv, mutable=["intermediates"]
    )
    _, captured = jax.jit(capture)(variables, images)
    dtypes = {leaf.dtype for leaf in jax.tree.leaves(captured["intermediates"])}
    assert dtypes == {jnp.dtype(jnp.bfloat16)}


def _is_dense_or_conv(module, method_name: str) -> bool:
    return method_name == "__call__" and isinstance(module, (nn.Dense, nn.Conv, nn.DenseGeneral))


@pytest.mark.parametrize(
    "model,message",
    [
        (_vit(patch_size=3), "patch_size=3 does not divide the image shape [8, 8, 1]"),
        (Linear(10), None),
    ],
)
def test_shape_errors_surface_from_shapes_alone(model, message):
    if message is None:
        abstract_variables(model, (8, 8, 1))
    else:
        with pytest.raises(ValueError, match=re.escape(message)):
            abstract_variables(model, (8, 8, 1))


def test_num_heads_must_divide_the_width():
    with pytest.raises(ValueError, match="num_heads=3 does not divide hidden_size=16"):
        _vit(num_heads=3)


def test_describe_counts_the_flops_of_a_dense_layer():
    # One [1, 64] x [64, 10] matmul (2 FLOPs per multiply-add) and the bias.
    description = describe_model(Linear(10), (8, 8, 1))
    assert description["num_params"] == 64 * 10 + 10
    assert 2 * 64 * 10 <= description["flops_per_image"] <= 2 * 64 * 10 + 10
    assert "head/kernel" in description["overview"] and "(64, 10)" in description["overview"]


@pytest.mark.slow  # ~28 s on 2 cores
def test_the_cnn_scores_small_images_and_keeps_batch_statistics():
    from jaxclf.models.cnn import CNN

    model = CNN(num_classes=10, widths=(8, 16), dropout_rate=0.1)
    variables = init_variables(model, (8, 8, 1), jax.random.key(0))
    assert set(variables) == {"params", "batch_stats"}
    images = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
    rngs = {"dropout": jax.random.key(2)}
    logits, updated = model.apply(variables, images, train=True, rngs=rngs, mutable=["batch_stats"])
    assert logits.shape == (4, 10) and logits.dtype == jnp.float32
    assert not jax.tree.all(jax.tree.map(jnp.array_equal, updated["batch_stats"], variables["batch_stats"]))
