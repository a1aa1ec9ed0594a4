"""Batches: one chain template over many inputs, on this machine or on a fleet.

A batch is a list of jobs (one per input row), each of them one ordinary
``aicp run-chain`` subprocess with its own run record. State lives in those run
records and in the batch record (``output_dir/batches/<batch_id>/``); an engine
(local threads, or Celery workers fed through Redis) only decides where and when
each job's subprocess runs. This is how Airflow's CeleryExecutor uses Celery: the
broker delivers messages, it never holds the truth.
"""
