"""Data and model math of the jobs, with no MPI: datasets and their LIBSVM and synthetic
sources, logistic-regression loss and gradients, metrics."""
