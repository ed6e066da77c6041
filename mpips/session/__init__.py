"""The session API a job uses: ``mpips.init`` splits a launch into servers and workers and
declares tables (ps)."""
