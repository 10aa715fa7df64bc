"""Small shared helpers: seeding, input checks, markdown tables."""

from art_ext.utils.checks import check_finite, check_labels, check_positive
from art_ext.utils.markdown import markdown_table
from art_ext.utils.seed import set_seed

__all__ = ["check_finite", "check_labels", "check_positive", "markdown_table", "set_seed"]
