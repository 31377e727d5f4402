"""The functional chip (:class:`golden_model.chip.ChipModel`) as a transport.

Whole-model speed and the scoreboard of the RTL transport: it runs the same descriptor
programs against a memory image, with the same statuses and the same bits, but no clock.
"""

from golden_model.chip import ChipModel
from rtl.layouts import Status

from .base import Transport


__all__ = ["FunctionalTransport"]


class FunctionalTransport(Transport):
    name = "functional"
    cycle_accurate = False

    def __init__(self, cfg):
        super().__init__(cfg)
        self.model = ChipModel(cfg)

    def write(self, addr, data):
        self.model.mem_write(addr, data)

    def read(self, addr, n):
        return self.model.mem_read(addr, n)

    def csr_write(self, addr, value):
        return Status(self.model.csr_write(addr, value))

    def csr_read(self, addr):
        value, status = self.model.csr_read(addr)
        return value, Status(status)

    def wait_idle(self, max_cycles):
        # A WAIT that can never be satisfied completes with TIMEOUT, as the RTL's does after
        # WAIT_TIMEOUT cycles; the driver reports it from the completion.
        self.model.run()
