"""mulsupcon_ld: reproduction harness for MulSupCon_LD (RLD and CLD)."""

__version__ = "0.1.0"
