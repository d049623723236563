"""The launcher: what runs on your machine to check, start, follow and fetch SageMaker jobs.

scripts/ are its entry points. It imports train.py's own modules (options, metrics, data, ...) by
their names, as train.py does: src/ stays flat because the container runs `python train.py` in it.
So whatever imports the launcher puts src/ on the import path first (each script's first lines,
tests/conftest.py).
"""
