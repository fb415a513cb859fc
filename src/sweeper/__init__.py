"""sweeper: experiment sweeps for a NumPy multi-layer perceptron."""

import logging
from pathlib import Path

__version__ = "0.1.0"

# The checkout the package runs from: conf/ and the Makefile sit beside src/.
CHECKOUT = Path(__file__).resolve().parents[2]

# Where it cannot write its config directory ($HOME read-only), matplotlib warns twice as it is
# imported, in every command, and works from a temporary one: nothing for our user to act on.
_MATPLOTLIB_NO_CONFIG_DIR = ("mkdir -p failed for path", "Matplotlib created a temporary")
logging.getLogger("matplotlib").addFilter(
    lambda record: not str(record.msg).startswith(_MATPLOTLIB_NO_CONFIG_DIR)
)
