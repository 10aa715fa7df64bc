"""
Default perturbation size of embedding-space AT / VAT on text
(:class:`~art_ext.defences.trainer.VirtualAdversarialTrainer` with a text classifier).

For images the trainer's default ``eps`` is a share of the median l2 norm of the inputs (about 2.3 on MNIST, where
the VAT paper uses 2.0). That rule does not carry over to text: the l2 norm of a normalised embedding sequence grows
as ``sqrt(max_len * embedding_dim)`` (about 74 for 40 tokens of 128 dimensions), so a quarter of it (about 18) drowns
the sentence, and on rt-polarity AT at that ``eps`` ends near chance. Text therefore takes an absolute ``eps`` on the
normalised embedding sequence, as Miyato, Dai and Goodfellow (2017) do (their value: 5.0); the measurement behind the
value is ``benchmarks/vat_text.py`` (see the results page of the documentation).
"""

from __future__ import annotations

#: Default ``eps`` for text: absolute l2 norm of the perturbation of a normalised embedding sequence.
DEFAULT_TEXT_EPS = 5.0
