"""MRzero reconstruction heads: small networks appended to the adjoint reconstruction.

* ``mlp``: a pixel-wise multilayer perceptron that maps each pixel's signal evolution over
  several contrasts to a quantitative value (the seed's T1 head, section 6.2);
* ``cnn``: a small residual convolutional network that maps an image to an image.

``build_head(config)`` makes either from a plain dict (stored as ``head_config`` in training
checkpoints), ``load_head(config, weights)`` rebuilds one from weights that were read safely
(``torch.load(..., weights_only=True)`` or safetensors), never from pickled modules.
"""

from mrzero.core.heads.cnn import ImageCNN
from mrzero.core.heads.config import HeadError, build_head, load_head
from mrzero.core.heads.mlp import PixelMLP

__all__ = ["HeadError", "ImageCNN", "PixelMLP", "build_head", "load_head"]
