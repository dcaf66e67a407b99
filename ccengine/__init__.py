"""ccengine: telephony control plane for financial contact centers."""

__version__ = "0.1.0"
