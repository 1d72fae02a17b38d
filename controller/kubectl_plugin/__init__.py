"""`kubectl stemedb`: the on-call view of a StemeDBCluster and the safe manual steps.

An executable named `kubectl-stemedb` on PATH is a kubectl plugin; the package
installs one (`cli.main`). `view` and `approval` are pure (object dicts and `now`
in, documents and text out); `api` does the Kubernetes I/O through the operator's
own kubeconfig and HTTP adapters.
"""
