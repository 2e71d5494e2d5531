"""Knowledge-graph embeddings: triples and splits, torch-geometric KGE models and relational GNN encoders (RGCN, FiLM),
filtered link-prediction evaluation, and resumable training; text features of concepts, and a knowledge
encoder (KAD) fine-tuned contrastively on the graph's names, definitions and relations."""
