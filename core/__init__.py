"""The bottom layer: units and conventions, operators, heads and the read side of bundles."""
