"""Starting ranks: the mpiexec command of a launch (mpiexec), the ``mpips launch`` wrapper that
runs it, relaunches and stops it (launcher), its processes and their clean-up (processes),
local ranks' start-up tracking (ranks, startup)."""
