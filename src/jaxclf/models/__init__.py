"""Flax linen classifiers. Each maps images ``[B, H, W, C]`` to float32 logits
``[B, num_classes]`` and takes ``train`` (dropout and friends act only then)."""
