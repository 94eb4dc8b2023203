"""Reranking the retriever's top K: candidate features, LambdaMART, and the ranker choice."""
