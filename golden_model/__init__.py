"""Bit-exact numpy golden model of the M890, module by module beside ``rtl``."""
