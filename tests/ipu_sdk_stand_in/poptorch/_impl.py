"""Stand-in for ``poptorch._impl``: the two functions ``optimum.graphcore.trainer_seq2seq`` imports.

Both act on a model wrapped in a ``PoplarExecutor``, which the stand-in never creates, so both raise.
"""

from ._no_ipu import NoIPUError


def unwrapModelIfNecessary(model):
    raise NoIPUError("poptorch._impl.unwrapModelIfNecessary (a model wrapped for the IPU)")


def rewrapModelIfNecessary(model):
    raise NoIPUError("poptorch._impl.rewrapModelIfNecessary (a model wrapped for the IPU)")
