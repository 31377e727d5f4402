"""Typed exceptions of the firmware (driver, compiler, runtime).

Every failure the driver can meet has a class here, and every class derives from
:class:`M890Error`, so a caller can catch them all at once. :class:`CheckpointError` and
:class:`UnsupportedConfig` also derive from the reference decoder's classes of the same names
(:mod:`golden_model.qwen`); the runtime converts those into these.
"""

from golden_model.qwen import CheckpointError as _CheckpointError
from golden_model.qwen import UnsupportedConfig as _UnsupportedConfig
from rtl.layouts import Status


__all__ = ["M890Error", "CheckpointError", "UnsupportedConfig", "OutOfDeviceMemory",
           "DeviceError", "DeviceTimeout", "TransportError"]


class M890Error(Exception):
    """Base class of every firmware error."""


class CheckpointError(_CheckpointError, M890Error):
    """A checkpoint directory is missing, unreadable or inconsistent."""


class UnsupportedConfig(_UnsupportedConfig, M890Error):
    """A model or request the chip, the compiler or the transport cannot run (the message says
    which limit and by how much)."""


class OutOfDeviceMemory(M890Error):
    """An allocation does not fit the device's HBM (or a program does not fit its scratchpad)."""

    def __init__(self, what, need, free, total):
        self.what, self.need, self.free, self.total = what, need, free, total
        super().__init__(f"out of device memory: {what} needs {need:,} bytes, {free:,} of "
                         f"{total:,} are free")


class DeviceError(M890Error):
    """The chip completed a descriptor (or refused a CSR access) with an error status.

    Attributes
    ----------
    status : rtl.layouts.Status
    queue, index : int or None
        Where the failing descriptor was (None for a CSR refusal).
    what : str
        What the driver was doing.
    """

    def __init__(self, status, what, *, queue=None, index=None, cookie=None):
        self.status = Status(status)
        self.what, self.queue, self.index, self.cookie = what, queue, index, cookie
        where = "" if queue is None else f" (queue {queue}, descriptor {index}, cookie {cookie:#x})"
        super().__init__(f"device error {self.status.name} ({self.status.value:#04x}) "
                         f"in {what}{where}")


class DeviceTimeout(M890Error):
    """The device did not finish: the transport's cycle limit passed before the chip went
    idle, or a WAIT descriptor completed with ``TIMEOUT`` (its semaphore never came)."""


class TransportError(M890Error):
    """The transport itself failed (a simulator that could not be built or stopped answering)."""
