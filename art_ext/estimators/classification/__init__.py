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

__all__: list[str] = [
    "PyTorchTextClassifier",
    "TensorFlowV2TextClassifier",
    "TextClassifierMixin",
    "LedgerClassifier",
    "QueryBudgetExceededError",
    "QueryLedger",
    "RemoteClassifier",
    "RemoteQueryError",
    "RequestCallbacks",
]
