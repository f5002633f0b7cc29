"""Airflow imports this module (from PYTHONPATH or $AIRFLOW_HOME/config) before it creates
its metadata engine: the place to group Airflow's own statements into jobs."""

import airflow_metadata_spans

airflow_metadata_spans.install()
