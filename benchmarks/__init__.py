"""Side-by-side benchmarks: our primitives against the peers, in one process, as ratios."""
