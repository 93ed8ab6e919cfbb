"""`make soak`: hours of mixed load through one router process while endpoints restart and the configuration churns.

`fleet` runs the processes (simulated model servers, the router) and writes the manifest directory; `load`
sends requests and sorts every outcome into expected or unexpected; `probe` samples the router's RSS, file
descriptors and asyncio tasks and fits their slopes; `report` renders the generated section of
bench/RESULTS.md. `python -m bench.soak --help` runs it.
"""
