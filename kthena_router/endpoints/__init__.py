"""What the router knows about each model-server endpoint: scraped load, cache use, latency and adapters."""
