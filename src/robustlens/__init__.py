"""robustlens: a desktop lens on adversarial examples (Ilyas et al. 2019, Cohen et al. 2019)."""

__version__ = "0.1.0"
