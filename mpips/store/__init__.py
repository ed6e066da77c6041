"""A server's storage of its part of a table: the sparse hash index and rows (sparse_rows),
the rows found for a repeated request (request_cache), a push's undo log (undo), and the
slices that put them behind one interface, dense ones in an RMA window (slices)."""
