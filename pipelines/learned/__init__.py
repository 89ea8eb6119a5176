"""MRzero reconstruction at the scanner: the ``adjoint``, ``iterative_adjoint`` and ``mrzero_head``
pipelines (``pipelines.py``), which reconstruct any trajectory with the deployed bundle's
trajectory and head (``lookup.py``, ``samples.py``, ``recon.py``, ``head.py``).
"""
