"""The SemDeDup kernels: pure functions of arrays, no files and no state.

Ordering a cluster by keep policy and scoring it in bounded blocks (:mod:`.pairwise`), spherical
k-means and nearest-centroid assignment (:mod:`.kmeans`), probing across clusters and the one keep
order (:mod:`.probe`), normalising rows (:mod:`.vectors`), grouping rows by cluster (:mod:`.clusters`)
and the removal rules on score columns (:mod:`.rules`). They run in this process or on any worker.
"""
