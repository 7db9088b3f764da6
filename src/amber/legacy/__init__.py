"""Read pickle, joblib, torch.save and numpy files without executing them.

Readers here build amber's inert graph nodes, never objects; loading them goes through the
same trust audit, typed-state checks and constructors as an ``.amber`` file.
"""
