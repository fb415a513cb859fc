"""sweeper: experiment sweeps for a NumPy multi-layer perceptron."""

__version__ = "0.1.0"
