"""
``art_ext.attacks.evasion``, mirroring ``art.attacks.evasion``.
"""

from art_ext.attacks.evasion.least_likely_class import LeastLikelyClassMethod
from art_ext.attacks.evasion.logit_margin import LogitMarginAttack
from art_ext.attacks.evasion.random_fgsm import RandomFGSM
from art_ext.attacks.evasion.virtual_adversarial_perturbation import VirtualAdversarialPerturbation

__all__: list[str] = ["LeastLikelyClassMethod", "LogitMarginAttack", "RandomFGSM", "VirtualAdversarialPerturbation"]
