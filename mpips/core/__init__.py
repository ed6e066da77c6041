"""The parameter server's rules, with no MPI: key ranges and placement (partition), table
specs and the one key validator (spec, checks), update rules (rules), consistency models and
vector clocks (consistency, vclock), and who hosts and copies each key segment (hosting)."""
