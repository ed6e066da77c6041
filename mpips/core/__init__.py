"""The parameter server's rules, with no MPI: key ranges and placement (partition), table
specs and request validation (spec, checks), update rules (rules), consistency models, when
a server runs each request, and vector clocks (consistency, scheduler, vclock), and who
hosts and copies each key segment (hosting)."""
