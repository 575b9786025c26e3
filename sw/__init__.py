"""rootshift software side: quantization-aware training, export and the golden integer model.

This package knows nothing of ``hw`` or ``sim``; they depend on it, never the reverse.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
