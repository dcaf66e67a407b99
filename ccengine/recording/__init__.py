"""Recording vault: streaming encryption, keys, signed manifests, PCI masking.

Import submodules directly (``ccengine.recording.vault`` etc.); this package keeps no state.
"""
