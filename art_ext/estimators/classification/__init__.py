"""
``art_ext.estimators.classification``, mirroring ``art.estimators.classification``.
"""

from art_ext.estimators.classification.ledger import LedgerClassifier, QueryBudgetExceededError, QueryLedger
from art_ext.estimators.classification.remote import RemoteClassifier, RemoteQueryError, RequestCallbacks
from art_ext.estimators.classification.text import (
    PyTorchTextClassifier,
    TensorFlowV2TextClassifier,
    TextClassifierMixin,
)
from art_ext.estimators.classification.utils import clone_classifier, to_probability_classifier

__all__: list[str] = [
    "PyTorchTextClassifier",
    "TensorFlowV2TextClassifier",
    "TextClassifierMixin",
    "clone_classifier",
    "to_probability_classifier",
    "LedgerClassifier",
    "QueryBudgetExceededError",
    "QueryLedger",
    "RemoteClassifier",
    "RemoteQueryError",
    "RequestCallbacks",
]
