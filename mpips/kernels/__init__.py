"""numba kernels: tiny, unchecked loops. Preconditions are in each docstring and are the
caller's job (see mpips.wire.message for validation of untrusted bytes). Each kernel has a plain
NumPy reference in mpips.kernels.reference and is tested against it."""
