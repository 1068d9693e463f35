"""The paper benchmarks, run as modules: ``python -m benchmarks.cifar_lowdata --scale cpu ...``."""
