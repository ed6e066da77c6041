"""What travels between ranks, with no MPI: request and reply headers (message), key and
value codecs and push filters (codec, keycache, filters), replica batches between servers
(replica). Every parser validates untrusted bytes before a kernel sees them."""
