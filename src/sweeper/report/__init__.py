"""``python -m sweeper.report``: tables and figures that compare the runs of one sweep.

Read from the MLflow store through its client API (``runs``), turned into tables (``tables``)
and figures (``figures``, ``confusion``), written as Markdown, CSV and one self-contained
HTML page (``document``, ``build``).
"""
