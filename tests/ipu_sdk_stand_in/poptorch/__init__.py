"""Stand-in for Graphcore's ``poptorch`` (Poplar SDK 3.3): the names optimum-graphcore 0.7.1 uses, and no device.

Host-side set-up behaves like poptorch's, so optimum-graphcore can build its ``poptorch.Options``, pipeline a model
and batch data. Everything that needs Graphcore's compiler or an IPU raises :class:`NoIPUError`. See ``../README.md``.

Stand-in only (not poptorch's API): :func:`block_of` reads back what :func:`BeginBlock` recorded, so a test can check
which IPU each layer was placed on.
"""

from __future__ import annotations

import enum
from typing import Any, Dict, NamedTuple, Optional

import torch

from . import _impl, optim  # noqa: F401  (optimum-graphcore imports both submodules)
from ._no_ipu import NoIPUError

__version__ = "3.3.0+stand-in"


# ---- enums: the members optimum-graphcore 0.7.1 reads ---------------------------------------------------------------
class DataLoaderMode(enum.IntEnum):
    """How ``poptorch.DataLoader`` fetches data; optimum-graphcore maps ``--dataloader_mode`` sync/async/async_rebatched
    to 0/1/2."""

    Sync = 0
    Async = 1
    AsyncRebatched = 2


class OutputMode(enum.IntEnum):
    """Which results of a device step come back to the host."""

    Final = 0
    EveryN = 1
    All = 2
    Sum = 3
    Default = 4


class ReductionType(enum.IntEnum):
    """How gradients are reduced over accumulation and replicas."""

    Sum = 0
    Mean = 1
    NoReduction = 2


class MatMulSerializationMode(enum.Enum):
    """How ``serializedMatMul`` splits a matmul (optimum-graphcore uses two as default arguments)."""

    InputChannels = "input_channels"
    ReducingDim = "reducing_dim"
    OutputChannels = "output_channels"
    Disabled = "none"


class AutoStage(enum.IntEnum):
    """How pipeline stages are numbered when a block gives none."""

    SameAsIpu = 0
    AutoIncrement = 1


# ---- options: record what optimum-graphcore's IPUConfig.to_options sets ----------------------------------------------
class _Group:
    """One group of options (``opts.Training``, ``opts.Precision``, ...): every setting made, by name, in ``values``."""

    def __init__(self, options: "Options"):
        self._options = options
        self.values: Dict[str, Any] = {}

    def _set(self, name: str, value: Any) -> "Options":
        self.values[name] = value
        return self._options


class _Training(_Group):
    @property
    def gradient_accumulation(self) -> int:
        return self.values.get("gradientAccumulation", 1)

    def gradientAccumulation(self, steps: int) -> "Options":
        return self._set("gradientAccumulation", int(steps))

    def accumulationAndReplicationReductionType(self, reduction: ReductionType) -> "Options":
        return self._set("accumulationAndReplicationReductionType", reduction)

    def setAutomaticLossScaling(self, enabled: bool) -> "Options":
        return self._set("automaticLossScaling", bool(enabled))


class _Precision(_Group):
    def enableStochasticRounding(self, enabled: bool) -> "Options":
        return self._set("stochasticRounding", bool(enabled))

    def setPartialsType(self, dtype: torch.dtype) -> "Options":
        return self._set("partialsType", dtype)


class _TensorLocations(_Group):
    def setOptimizerLocation(self, settings: "TensorLocationSettings") -> "Options":
        return self._set("optimizerLocation", settings)


class _Popart(_Group):
    def set(self, key: str, value: Any) -> "Options":
        return self._set(key, value)

    def setPatterns(self, patterns: Dict[str, bool], level: int = 2) -> "Options":
        return self._set("patterns", dict(patterns))


class _Distributed(_Group):
    numProcesses = 1
    processId = 0


class Options:
    """``poptorch.Options``: each setter records its value (in ``values``, or its group's) and returns the options."""

    def __init__(self):
        self.values: Dict[str, Any] = {}
        self.Training = _Training(self)
        self.Precision = _Precision(self)
        self.TensorLocations = _TensorLocations(self)
        self.Distributed = _Distributed(self)
        self._Popart = _Popart(self)
        self._popart = self._Popart

    def _set(self, name: str, value: Any) -> "Options":
        self.values[name] = value
        return self

    @property
    def replication_factor(self) -> int:
        return self.values.get("replicationFactor", 1)

    @property
    def device_iterations(self) -> int:
        return self.values.get("deviceIterations", 1)

    def autoRoundNumIPUs(self, enabled: bool) -> "Options":
        return self._set("autoRoundNumIPUs", bool(enabled))

    def replicationFactor(self, factor: int) -> "Options":
        return self._set("replicationFactor", int(factor))

    def deviceIterations(self, iterations: int) -> "Options":
        return self._set("deviceIterations", int(iterations))

    def outputMode(self, mode: OutputMode, output_return_period: Optional[int] = None) -> "Options":
        return self._set("outputMode", mode)

    def randomSeed(self, seed: int) -> "Options":
        return self._set("randomSeed", int(seed))

    def setExecutionStrategy(self, strategy: Any) -> "Options":
        return self._set("executionStrategy", strategy)

    def useOfflineIpuTarget(self, ipu_version: int = 2) -> "Options":
        return self._set("offlineIpuTarget", ipu_version)

    def setAvailableMemoryProportion(self, proportions: Dict[str, float]) -> "Options":
        return self._set("availableMemoryProportion", dict(proportions))

    def enableExecutableCaching(self, path: str) -> "Options":
        return self._set("executableCachePath", path)


class TensorLocationSettings:
    """Where a kind of tensor lives; the setters chain, as poptorch's do."""

    def __init__(self):
        self.on_chip: Optional[bool] = None
        self.replicated_tensor_sharding: Optional[bool] = None

    def useOnChipStorage(self, on_chip: bool = True) -> "TensorLocationSettings":
        self.on_chip = bool(on_chip)
        return self

    def useReplicatedTensorSharding(self, sharded: bool = True) -> "TensorLocationSettings":
        self.replicated_tensor_sharding = bool(sharded)
        return self


class PipelinedExecution:
    """Execution strategy for training: the stages of a pipeline run on their IPUs at the same time."""

    def __init__(self, *args: Any):
        self.args = args


class ShardedExecution:
    """Execution strategy for inference: the stages run one after the other."""

    def __init__(self, *args: Any):
        self.args = args


# ---- pipeline annotations ----------------------------------------------------------------------------------------
class Block(NamedTuple):
    """Stand-in only: what :func:`BeginBlock` recorded for a module."""

    user_id: Optional[str]
    ipu_id: Optional[int]


_BLOCK_ATTRIBUTE = "_poptorch_stand_in_block"


def BeginBlock(layer_to_call: torch.nn.Module, user_id: Optional[str] = None, ipu_id: Optional[int] = None):
    """Mark ``layer_to_call`` as the start of a pipeline stage on IPU ``ipu_id``; returns the same module.

    Raises:
        TypeError: if ``layer_to_call`` is not a ``torch.nn.Module``.
    """
    if not isinstance(layer_to_call, torch.nn.Module):
        raise TypeError(f"BeginBlock needs a torch.nn.Module, got {type(layer_to_call).__name__}")
    setattr(layer_to_call, _BLOCK_ATTRIBUTE, Block(user_id, ipu_id))
    return layer_to_call


def removeBlocks(module: torch.nn.Module) -> None:
    """Remove every :func:`BeginBlock` mark from ``module`` and its submodules."""
    for submodule in module.modules():
        submodule.__dict__.pop(_BLOCK_ATTRIBUTE, None)


def block_of(module: torch.nn.Module) -> Optional[Block]:
    """Stand-in only: the :class:`Block` that :func:`BeginBlock` put on ``module``, or ``None``."""
    return module.__dict__.get(_BLOCK_ATTRIBUTE)


def recomputationCheckpoint(*tensors: torch.Tensor):
    """Mark tensors as recomputation checkpoints; on the host they pass through unchanged, as in poptorch."""
    return tensors[0] if len(tensors) == 1 else tensors


# ---- data --------------------------------------------------------------------------------------------------------
class DataLoader(torch.utils.data.DataLoader):
    """``poptorch.DataLoader``: a torch ``DataLoader`` whose batches hold what one device step consumes.

    A batch is ``batch_size * device_iterations * replication_factor * gradient_accumulation`` examples, and an
    incomplete last batch is dropped by default. As in poptorch, ``drop_last=False`` is refused (``AssertionError``)
    for a dataset whose length is not a multiple of that, since a device step has a fixed batch size. The asynchronous
    modes are accepted and recorded in ``mode``; the stand-in always loads synchronously.
    """

    def __init__(
        self,
        options: Options,
        dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        num_workers: int = 0,
        drop_last: bool = True,
        persistent_workers: Optional[bool] = None,
        auto_distributed_partitioning: bool = True,
        mode: DataLoaderMode = DataLoaderMode.Sync,
        async_options: Optional[Dict[str, Any]] = None,
        rebatched_worker_size: Optional[int] = None,
        **kwargs: Any,
    ):
        if not isinstance(options, Options):
            raise TypeError(f"poptorch.DataLoader needs poptorch.Options, got {type(options).__name__}")
        self._options = options
        self.mode = DataLoaderMode(mode)
        self.rebatched_worker_size = rebatched_worker_size
        self._combined_batch_size = (
            batch_size * options.device_iterations * options.replication_factor * options.Training.gradient_accumulation
        )
        if not drop_last and not isinstance(dataset, torch.utils.data.IterableDataset):
            if len(dataset) % self._combined_batch_size:
                raise AssertionError(
                    f"The number of elements in the dataset ({len(dataset)}) is not divisible by the number of "
                    f"elements processed per step ({self._combined_batch_size}) and drop_last=False."
                )
        if persistent_workers is None:
            persistent_workers = num_workers > 0
        super().__init__(
            dataset,
            batch_size=self._combined_batch_size,
            shuffle=shuffle,
            num_workers=num_workers,
            drop_last=drop_last,
            persistent_workers=persistent_workers,
            **kwargs,
        )

    @property
    def combinedBatchSize(self) -> int:
        """Examples consumed from the dataset by one step on the device."""
        return self._combined_batch_size

    @property
    def options(self) -> Options:
        return self._options


# ---- the device boundary -----------------------------------------------------------------------------------------
class PoplarExecutor:
    """What ``trainingModel``/``inferenceModel`` return in poptorch: the model compiled for and run on IPUs."""

    def __init__(self, *args: Any, **kwargs: Any):
        raise NoIPUError("poptorch.PoplarExecutor (a model compiled for the IPU)")


def trainingModel(model: torch.nn.Module, options: Optional[Options] = None, optimizer=None):
    """Raises :class:`NoIPUError`: wrapping a model for training on IPUs is where compiling for the device begins."""
    raise NoIPUError(f"poptorch.trainingModel({type(model).__name__}) (compiling for training on the IPU)")


def inferenceModel(model: torch.nn.Module, options: Optional[Options] = None):
    """Raises :class:`NoIPUError`: wrapping a model for inference on IPUs is where compiling for the device begins."""
    raise NoIPUError(f"poptorch.inferenceModel({type(model).__name__}) (compiling for inference on the IPU)")


def ipuHardwareVersion() -> int:
    """2, as on an IPU-M2000 or Bow system: optimum-graphcore builds no ``Options`` for anything else (see README)."""
    return 2


def setLogLevel(level: Any) -> None:
    """poptorch's console verbosity; the stand-in prints nothing, so there is nothing to set."""
