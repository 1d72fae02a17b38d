"""`make demo`: the operator healing a simulated StemeDB cluster on a local control plane."""
