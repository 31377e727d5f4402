"""Amaranth RTL of the M890 accelerator."""
