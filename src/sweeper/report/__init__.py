"""``python -m sweeper.report``: tables and figures that compare the runs of one sweep, or
two sweeps' runs of the same configurations (``compare``).

Read from the MLflow store through its client API (``runs``), turned into tables (``tables``),
statistics (``stats``, ``importance``, in a second process: ``worker``) and figures
(``figures``, ``confusion``), written as Markdown, CSV and one self-contained HTML page
(``document``, ``build``).
"""
