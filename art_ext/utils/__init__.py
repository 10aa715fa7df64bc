"""Small shared helpers: seeding, input checks, markdown tables."""

from art_ext.utils.checks import check_finite, check_labels, check_positive
from art_ext.utils.markdown import markdown_table
from art_ext.utils.outputs import OUTPUT_KINDS, detect_output_kind, output_kind_of
from art_ext.utils.seed import set_seed

__all__ = [
    "OUTPUT_KINDS",
    "check_finite",
    "check_labels",
    "check_positive",
    "detect_output_kind",
    "markdown_table",
    "output_kind_of",
    "set_seed",
]
