"""Built-in verifiers and rewards, registered by name for YAML (`rule: mentions`) and Python.

Importing this package is cheap: the semantic encoder loads on first use.
"""

from retrain.rewards import semantic, text

__all__ = ["semantic", "text"]
