"""pytest configuration of the Verilator regression: the toolchain environment, once."""

from verif.common.toolchain import setup_verilator_env

setup_verilator_env()
