"""Stand-in for Graphcore's ``popart`` (Poplar SDK 3.3): only the enums optimum-graphcore 0.7.1 reads.

``optimum.graphcore.ipu_configuration`` passes these two settings to the PopART session options when it builds
``poptorch.Options``; see ``../README.md`` for what the stand-ins are for.
"""

import enum


class AccumulateOuterFragmentSchedule(enum.IntEnum):
    """How the optimizer step after gradient accumulation is scheduled (the member optimum-graphcore sets)."""

    OverlapMemoryOptimized = 3


class SubgraphCopyingStrategy(enum.IntEnum):
    """When inputs are copied into outlined subgraphs (the member optimum-graphcore sets)."""

    JustInTime = 1
