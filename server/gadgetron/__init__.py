"""The project's pipelines as a Gadgetron external gadget (``mrzero gadgetron-external``).

Gadgetron's ``<external><connect .../></external>`` node connects to this listener and streams
what its chain holds at that point (acquisitions, waveforms, images, image arrays); the
registered pipelines reconstruct it and the images go back into the chain. ``wire`` frames the
external-channel protocol, ``session`` serves one Gadgetron connection, ``listener`` accepts
them. See ``docs/gadgetron.md``.
"""
