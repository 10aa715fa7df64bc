"""
Data loaders. ``load_digits`` uses scikit-learn's built-in digits; MNIST and rt-polarity are read from local files
given by ``path`` or the ``ART_EXT_DATA`` environment variable. Nothing is ever downloaded.
"""

from art_ext.data._common import DATA_ENV, DataNotFoundError
from art_ext.data.digits import load_digits
from art_ext.data.mnist import load_mnist
from art_ext.data.rt_polarity import Vocabulary, load_rt_polarity, tokenize
from art_ext.data.synthetic_text import make_synthetic_sentiment
from art_ext.data.user_data import AuditData, AuditDataError, load_audit_data

__all__ = [
    "AuditData",
    "AuditDataError",
    "load_audit_data",
    "DATA_ENV",
    "DataNotFoundError",
    "Vocabulary",
    "load_digits",
    "load_mnist",
    "load_rt_polarity",
    "make_synthetic_sentiment",
    "tokenize",
]
