"""Test stand-in for cuML: KMeans, TSNE and NearestNeighbors on the CPU, arguments checked as cuML 26.x checks them."""

__version__ = "0.0.0+fake"
FAKE = True
CALLS: list[tuple[str, dict]] = []  # (estimator, keyword arguments) of every constructor call, in order
