"""The stand-in's one error: a call that needs Graphcore's compiler or an IPU (see ``../README.md``)."""


class NoIPUError(RuntimeError):
    """A call that needs Graphcore's compiler or an IPU was made against the stand-in for poptorch."""

    def __init__(self, what: str):
        super().__init__(
            f"no IPU here: {what} needs Graphcore's Poplar SDK and an IPU. This is a stand-in for Graphcore's poptorch "
            "(tests/ipu_sdk_stand_in), which stops at the device boundary. Run on an IPU system with the SDK enabled."
        )
