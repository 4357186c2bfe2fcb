"""Host-side internals of a run (NOT pure: files, signals, printing): ``checkpoint`` (orbax checkpoints, restore,
``load_run``), ``console`` (progress lines, signals, the epoch on a worker thread) and ``logs`` (run directory,
``progress.csv``, TensorBoard)."""
