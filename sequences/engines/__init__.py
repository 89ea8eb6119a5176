"""Simulation engines behind ``mrzero.sequences.simulate.simulate``.

* ``isochromat``: the seed's Algorithm 1, spins per voxel; with many spins the accuracy reference.
* ``configuration``: the fast engine, extended-phase-graph configuration states with 3D moments
  and analytic intravoxel and T2' dephasing.

Shared pieces: ``voxels`` (the phantom flattened into the sequence's frame), ``rf`` (the RF
rotation in the project's sign convention) and ``timeline`` (cumulative moments and times of
the events of a repetition).
"""
