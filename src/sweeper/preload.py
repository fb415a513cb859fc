"""Everything a job's process would otherwise import or open on its own, done once by the local
launcher's fork server (its ``preload`` setting names this module), so every job it forks finds
it done.

Each entry was seen imported by every job of a profiled sweep: the MLflow run's start (its SQL
store, the schema check, git for the source tags, the tracing set-up) and unpickling the job's
Hydra state, which refers to every Hydra plugin class by name. Then it scans Hydra's plugins and
opens the sweep's SQLite store (named in its environment by the sweep), once for all the jobs.
All of it lives as long as the fork server and the jobs it forks: it is made with the garbage
collector off and then frozen out of it (``sweeper.frozen_imports``).
"""

import os

from sweeper.frozen_imports import imports_frozen

with imports_frozen():
    import netrc  # noqa: F401  (requests, when MLflow opens its session)

    import alembic.command  # noqa: F401  (the SQL store's schema check)
    import alembic.config  # noqa: F401
    import antlr4.LL1Analyzer  # noqa: F401  (Hydra's override parser)
    import git  # noqa: F401  (MLflow's git run context, on every run's start)
    import hydra._internal.logging_config  # noqa: F401  (Hydra's run_job)
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_workspace_store  # noqa: F401
    import mlflow.tracing.export.utils  # noqa: F401
    import mlflow.tracing.processor.base_mlflow  # noqa: F401
    import mlflow.tracing.processor.otel  # noqa: F401
    import mlflow.tracing.utils.environment  # noqa: F401
    import omegaconf._impl  # noqa: F401
    import sqlalchemy.dialects.sqlite  # noqa: F401
    from hydra.core.plugins import Plugins

    import sweeper.app  # noqa: F401  (the task function, the core, the data, MLflow)
    from sweeper.store_setup import open_for_forked_jobs
    from sweeper.store_uri import SWEEP_STORE_VARIABLE

    # Imports every installed Hydra plugin (launchers, sweepers), as the sweep's process did. (Not
    # a module under hydra_plugins/: Hydra's scan imports those, and this one would scan again.)
    Plugins.instance()

    # The sweep's store, which every job would otherwise open and check on its own.
    open_for_forked_jobs(os.environ.get(SWEEP_STORE_VARIABLE, ""))
