"""Retrieval indexes: the text pipeline shared by build and query, embedders, Qdrant versions, freshness."""
