"""jaxclf: train classifiers in JAX by minimising cross-entropy."""

__version__ = "0.1.0"
