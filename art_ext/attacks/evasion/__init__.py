"""
``art_ext.attacks.evasion``, mirroring ``art.attacks.evasion``.
"""

from art_ext.attacks.evasion.virtual_adversarial_perturbation import VirtualAdversarialPerturbation

__all__: list[str] = ["VirtualAdversarialPerturbation"]
