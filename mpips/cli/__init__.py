"""The ``mpips`` command line: run, launch, warmup (main), ckpt (ckpt), sweep (sweep)."""
