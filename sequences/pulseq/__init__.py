"""The Pulseq boundary: hardware limits, export to ``.seq``, import from ``.seq``, signatures.

Gradient moments cross from cycles/FOV to 1/m here and nowhere else (``core/units.py``).
"""
