"""Small reconstruction stages (generator functions ``stage(items, ctx)``, see ``pipelines/base.py``)."""
