"""Datasets (TFDS builders, including the embedded digits) and the loader."""
