"""Knowledge-graph embeddings: triples and splits, torch-geometric KGE models and an RGCN encoder,
filtered link-prediction evaluation, and resumable training."""
