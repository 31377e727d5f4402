"""What the driver needs of a chip: the host port of ``docs/chip.md``.

A transport moves bytes to and from HBM, reads and writes CSRs, and lets the chip run until it
is idle. :class:`firmware.driver.Device` is written against this class only, so the same
program runs on the Verilated RTL, on the functional chip and on Amaranth's simulator.
"""

import abc


__all__ = ["Transport"]


class Transport(abc.ABC):
    """The host port of one chip.

    Attributes
    ----------
    cfg : rtl.config.ChipConfig
        The chip behind the transport.
    name : str
        Short name for reports ("rtl", "functional", "pysim").
    cycle_accurate : bool
        Whether :attr:`cycles` and the chip's counters are the RTL's (False for the functional
        chip, whose counters read 0).
    """

    name = "transport"
    cycle_accurate = False

    def __init__(self, cfg):
        self.cfg = cfg

    @abc.abstractmethod
    def write(self, addr, data):
        """Write ``data`` (bytes-like) to HBM at byte address ``addr`` (any alignment)."""

    @abc.abstractmethod
    def read(self, addr, n):
        """Read ``n`` bytes of HBM at byte address ``addr``; returns ``bytes``."""

    @abc.abstractmethod
    def csr_write(self, addr, value):
        """Write the 32-bit CSR at byte address ``addr``; returns the :class:`Status` of the
        access (``SUCCESS`` or the refusal)."""

    @abc.abstractmethod
    def csr_read(self, addr):
        """Read the CSR at ``addr``; returns ``(value, Status)``."""

    @abc.abstractmethod
    def wait_idle(self, max_cycles):
        """Let the chip run until no queue has work and every unit is idle.

        Raises :class:`firmware.errors.DeviceTimeout` if that takes more than ``max_cycles``
        cycles (cycle-accurate transports) or never happens (the functional chip).
        """

    @property
    def cycles(self):
        """Clock cycles simulated so far (0 for a transport without a clock)."""
        return 0

    def close(self):  # noqa: B027 (optional: most transports hold nothing to release)
        """Release the simulator."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
