"""Comparison: canonical forms of both sides, the diff walk and the deepdiff explanation;
`shadow compare` for one key by hand."""
