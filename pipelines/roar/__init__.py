"""RoAR: R2* and S0 maps from multi-gradient-echo magnitude images with a U-Net trained
self-supervised through the signal model S(t) = S0 exp(-R2* t) F(t) (Torop et al. 2020)."""
