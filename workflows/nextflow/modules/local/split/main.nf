process SPLIT_H5AD {
    tag "$meta.id"
    label 'process_single'

    conda "${moduleDir}/../../geovae/fit/environment.yml"
    // built from the repository's Dockerfile (no published image): docker build -t geovae:0.2.0 .
    container "geovae:0.2.0"

    input:
    tuple val(meta), path(h5ad)

    output:
    tuple val(meta), path("${prefix}.reference.h5ad"), emit: reference
    tuple val(meta), path("${prefix}.query.h5ad")    , emit: query
    path "versions.yml"                              , emit: versions
    tuple val("${task.process}"), val('anndata'), eval("python3 -c 'import anndata; print(anndata.__version__)'"), emit: versions_anndata, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    // bin/split_h5ad.py is workflows/snakemake/scripts/split.py (one script for both engines)
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    export OMP_NUM_THREADS=${task.cpus}
    split_h5ad.py ${h5ad} ${prefix}.reference.h5ad ${prefix}.query.h5ad ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        anndata: \$(python3 -c 'import anndata; print(anndata.__version__)')
    END_VERSIONS
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.reference.h5ad ${prefix}.query.h5ad

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        anndata: \$(python3 -c 'import anndata; print(anndata.__version__)')
    END_VERSIONS
    """
}
