"""The HBM model: interleaved channels with a fixed latency, and the port requesters use.

(The model itself is being written; the port signature below is the contract.)
"""

from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["hbm_request_layout", "HbmPortSignature"]


def hbm_request_layout(cfg):
    """One request: a stripe (``hbm_channels × hbm_bytes_per_cycle`` bytes) of HBM.

    ``addr`` is the stripe index (byte address ÷ stripe bytes). ``mask`` has a bit per byte:
    the bytes to write, or for a read the bytes wanted (a channel whose bytes are all unmasked
    is not used). ``write`` selects a write.
    """
    stripe = cfg.hbm_channels * cfg.hbm_bytes_per_cycle
    return data.StructLayout({
        "write": 1,
        "addr":  cfg.addr_width - (stripe.bit_length() - 1),
        "data":  8 * stripe,
        "mask":  stripe,
    })


class HbmPortSignature(wiring.Signature):
    """An HBM port, seen from the requester.

    ``req`` is a stream of :func:`hbm_request_layout` requests. The read data of a request
    accepted in cycle t is on ``resp_data`` with ``resp_valid`` high in cycle
    t + ``hbm_latency`` (exactly; the requester must take it then, so it asks only when it has
    room). Masked-out bytes of a response are undefined. Writes have no response. Requests of
    one port are served in order.
    """

    def __init__(self, cfg):
        stripe = cfg.hbm_channels * cfg.hbm_bytes_per_cycle
        super().__init__({
            "req":        Out(stream.Signature(hbm_request_layout(cfg))),
            "resp_valid": In(1),
            "resp_data":  In(8 * stripe),
        })
