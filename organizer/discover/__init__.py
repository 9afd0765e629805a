"""Finding the groups a library has: UMAP + HDBSCAN with a group tree, suggested names, duplicates, map selection."""
