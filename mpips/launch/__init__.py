"""Starting ranks: the ``mpips launch`` wrapper around mpiexec (launcher), its processes and
their clean-up (processes), local ranks' start-up tracking (ranks, startup)."""
