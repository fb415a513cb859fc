"""sweeper's Hydra launchers (local, Ray), the basic sweeper that checks its jobs once per
shape, and the handling of Ctrl-C and SIGTERM they share; Hydra loads plugins only from the
``hydra_plugins`` package."""
