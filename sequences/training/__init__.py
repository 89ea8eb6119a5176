"""MRzero sequence learning: recipes, targets, losses, learnable parameters, schedules, trainer, report.

``load_recipe(path)`` reads a strict YAML/TOML/JSON recipe (``recipe.py``), ``Trainer(recipe)``
runs it (``trainer.py``); ``mrzero train RECIPE`` is the command line. See docs/training.md.
"""

from mrzero.sequences.training.recipe import Recipe, RecipeError, load_recipe, recipe_path
from mrzero.sequences.training.trainer import Trainer, TrainingError, TrainingResult

__all__ = [
    "Recipe",
    "RecipeError",
    "Trainer",
    "TrainingError",
    "TrainingResult",
    "load_recipe",
    "recipe_path",
]
