"""Helpers the tests share, each defined once: launching ranks and reading what they printed
(launch, live_launch, results), data paths and CI switches (data), drill counts (drills),
imports without MPI (nompi), checkpoint fixtures (ckpt), keys (keys)."""
