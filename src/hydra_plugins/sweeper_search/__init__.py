"""sweeper's search sweeper: Optuna by ask-and-tell over a space in Hydra's override grammar."""
