"""Where configuration comes from: a directory of manifests (`files`), or the Kubernetes API.

A source only gathers resources into a `ResourceStore` and reports a new `Resources` view when something
changed; it never routes, reconciles or writes status itself.
"""
