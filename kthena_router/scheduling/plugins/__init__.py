"""Built-in scheduler plugins, one module each; `scheduling/registry.py` lists them by name."""
