"""Load and overhead benchmarks, run by hand (`python -m benchmarks.<name>`); each prints JSON."""
