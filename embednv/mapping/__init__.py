"""A 2-D map of note embeddings: streaming PCA, k-means cohorts, t-SNE, cluster terms, metrics.

One phase per module, composed by `run.run_map` (the CLI calls it through `cli.map_command`):

    reader   stream shards in record batches, L2-normalise
    pca      exact streaming PCA to 50 dims (covariance accumulated batch by batch)
    clusters k-means on the 50-d vectors, sizes, exemplars
    tsne     t-SNE parameters done right (Kobak & Berens 2019; Belkina et al. 2019)
    terms    class-based TF-IDF terms per cluster from the note texts
    metrics  kNN preservation, silhouette, NMI/ARI against known labels
    render   map.png (density-aware) and map.html (self-contained, offline)
    publish  every file a map shows, from its points (a fit, an update and a forget all write through it)
    state    what a map keeps for later placement: the PCA basis, centroids, each note's 50-d coordinates
    place    new notes onto a fitted map without moving the old ones (openTSNE transform, kNN position)
    sample   above 200k notes: t-SNE on a stratified sample, the rest placed
    update   `map --update`: new and changed notes placed, gone ones removed
    forget   `forget_from_map`: notes removed from every file of a map
    registry the maps made from an embeddings directory (its manifest's "maps")

`compute` runs pca, clusters and tsne (and the metrics on the 50-d vectors) as one function;
`placement` decides whether it runs in this process or, through `ray_stage`, as one Ray task
with a GPU on a cluster worker. `backends` holds the only code that imports scikit-learn/openTSNE
or cuML for the heavy steps.
Nothing here is imported by `embednv` at start-up, so `embednv --help` stays instant.
"""
