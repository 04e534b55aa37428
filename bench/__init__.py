"""Benchmark: our tenant server against Orthanc's official MultitenantDicom plugin (``python -m bench``)."""
