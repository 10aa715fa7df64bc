"""
Default perturbation size of embedding-space AT / VAT on text
(:class:`~art_ext.defences.trainer.VirtualAdversarialTrainer` with a text classifier).

For images the trainer's default ``eps`` is a share of the median l2 norm of the inputs (about 2.3 on MNIST, where
the VAT paper uses 2.0). That rule does not carry over to text: the l2 norm of a normalised embedding sequence grows
as ``sqrt(max_len * embedding_dim)`` (about 74 for 40 tokens of 128 dimensions), so a quarter of it (about 18) drowns
the sentence. Text therefore takes an absolute ``eps`` on the normalised embedding sequence, as Miyato, Dai and
Goodfellow (2017) do. Their value, 5.0, is tuned for a large LSTM initialised from a pretrained language model: on
rt-polarity with the reference models trained from scratch, AT at 5.0 stays at chance (three seeds), while AT and VAT
at 0.5 to 2.0 train normally (a one-seed sweep). The default, 0.5, was fixed before the three-seed run of ``benchmarks/vat_text.py``
that checks it (see the results page of the documentation).
"""

from __future__ import annotations

#: Default ``eps`` for text: absolute l2 norm of the perturbation of a normalised embedding sequence.
DEFAULT_TEXT_EPS = 0.5
