"""Optimisers as pure ``init``/``step`` pairs (``optimizers``)."""
