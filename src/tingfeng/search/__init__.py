"""Full-text search over posts: index terms, the query syntax, the search service."""
