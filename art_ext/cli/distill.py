"""Former module of ``art-ext distill``; the command is now ``art-ext distillation`` (``distill`` still works)."""

from art_ext.cli.distillation import QUICK_ATTACKS, add_parser, compare, comparison_figures, run, train_pair

__all__ = ["QUICK_ATTACKS", "add_parser", "compare", "comparison_figures", "run", "train_pair"]
