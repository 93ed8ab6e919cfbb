"""Scheduling-quality benchmark: the same fleet and request trace behind each routing policy.

`python -m bench.scheduling` (or `make bench-scheduling`) starts a fleet of simulated vLLM servers
(`fleet.py`), replays seeded open-loop traces (`workloads.py`, `client.py`) through each system under
test (`systems.py`: our router with its default pipeline and with each single plugin, and vllm-router's
policies) and writes `bench/RESULTS.md` and one PNG per workload (`report.py`). Loopback only.
"""
