"""sweeper: experiment sweeps for a NumPy multi-layer perceptron."""

from pathlib import Path

__version__ = "0.1.0"

# The checkout the package runs from: conf/ and the Makefile sit beside src/.
CHECKOUT = Path(__file__).resolve().parents[2]
