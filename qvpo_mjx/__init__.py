"""qvpo-mjx: QVPO (Q-weighted Variational Policy Optimization) as one compiled JAX program."""

from qvpo_mjx.config import QVPOConfig

__all__ = ["QVPOConfig"]
__version__ = "0.1.0"
