"""Native PyTorch implementations of the supported families (one module per family).

Importing a family module registers its variants in :mod:`focalinfer.registry`.
"""
