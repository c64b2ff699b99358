"""arnet: weakly supervised video anomaly detection (AR-Net, ICME 2020, and beyond)."""

__version__ = "0.1.0"
