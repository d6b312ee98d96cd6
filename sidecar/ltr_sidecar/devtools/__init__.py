"""Development engines for tests, benchmarks and the demo: a tiny real `transformers serve` engine and a
scripted OpenAI-compatible engine. Product code (server, engine client, predictor, scheduling) never
imports this package; `bench/` (which is itself a development tool) may."""
