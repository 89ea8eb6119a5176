"""The shipped MRzero training recipes (``*.yaml``), found by name by
``mrzero.sequences.training.recipe_path``.

A package only so that the YAML files install with the project as package data.
"""
