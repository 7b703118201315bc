"""rollsweep: reproducible rollout collection, parameter sweeps and reward analysis."""

__version__ = "0.1.0"
