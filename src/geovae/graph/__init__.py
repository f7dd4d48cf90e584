"""Graph utilities below the models: kNN graphs (`neighbors`), the PAGA merge of clusters
the graph cannot tell apart (`merge`) and numba's on-disk cache for umap-learn / pynndescent
(`jit_cache`). They need only geometry and errors, so both the c*GMΔVAE's ``graph`` merge
rule (`geovae.modules.graph_merge`) and the scanpy-style verbs (`geovae.tools`) use them."""
