"""The investigator agent and its products (graph, planners, report, judge) and the
`forensics` command line."""
