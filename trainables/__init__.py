"""Ray Tune trainables: thin wrappers that build from `ktg_search` and report."""
