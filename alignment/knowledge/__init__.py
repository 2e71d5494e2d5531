"""The knowledge the aligner trains with: graph, index and mentions made on first use (`assets`), the entity
vocabulary (`vocabulary`), the state of every entity in each report and image (`entity_states`), how alike two entities
are and the vectors that say it (`similarity`), and word- and pair-level knowledge (`pairs`).

```python
assets = ensure_assets(data_dir, cache_dir)                      # builds what is missing, re-uses the rest
reports = assets.reports()                                       # [(Report, [Mention, ...]), ...] of the IU corpus
vocab = build_vocabulary("chestxray14", assets.kg_dir, assets.index, reports, extra=16)
report_ids, states = report_states(reports, vocab)               # int64 [R, K] of alignment.states
similarity = entity_similarity(vocab, assets.kg_dir, entity_vectors(vocab))
```
"""

from .assets import Assets, ensure_assets, load_reports, report_mentions
from .entity_states import image_states, report_states
from .pairs import pseudo_pairs, word_concepts
from .similarity import concept_vectors_for, entity_similarity, entity_texts, entity_vectors
from .vocabulary import EntityVocabulary, build_vocabulary

__all__ = [
    "Assets", "EntityVocabulary", "build_vocabulary", "concept_vectors_for", "ensure_assets", "entity_similarity",
    "entity_texts", "entity_vectors", "image_states", "load_reports", "pseudo_pairs", "report_mentions", "report_states",
    "word_concepts",
]
