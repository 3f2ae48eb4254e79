"""Optimisers and the run state machine: ``optimizers`` (each optimiser a pair of pure functions, ``init`` and
``step``) and ``loop`` (``RunState``, the pure ``init`` and ``step`` every driver is built from, and the loops
around them: a compiled ``lax.while_loop``, host-dispatched steps, and the chunked driver loop)."""
