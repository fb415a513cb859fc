"""sweeper's Hydra launcher; Hydra loads launchers only from the ``hydra_plugins`` package."""
