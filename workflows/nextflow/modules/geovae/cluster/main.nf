process GEOVAE_CLUSTER {
    tag "$meta.id"
    label 'process_single'

    conda "${moduleDir}/environment.yml"
    // built from the repository's Dockerfile (no published image): docker build -t geovae:0.2.0 .
    container "geovae:0.2.0"

    input:
    tuple val(meta), path(h5ad)

    output:
    tuple val(meta), path("${prefix}.h5ad")        , emit: h5ad
    tuple val(meta), path("${prefix}.metrics.json"), emit: metrics
    tuple val(meta), path("${prefix}.umap.png")    , emit: plot, optional: true
    path "versions.yml"                            , emit: versions
    tuple val("${task.process}"), val('geovae'), eval("geovae --version | sed 's/^geovae //'"), emit: versions_geovae, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    // geovae cluster has no --threads: the task's cores cap the numeric libraries' threads
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}.cluster"
    """
    export OMP_NUM_THREADS=${task.cpus}
    geovae cluster ${h5ad} \\
        --out ${prefix}.h5ad \\
        --metrics-json ${prefix}.metrics.json \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        geovae: \$(geovae --version | sed 's/^geovae //')
    END_VERSIONS
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}.cluster"
    """
    touch ${prefix}.h5ad
    echo '{}' > ${prefix}.metrics.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        geovae: \$(geovae --version | sed 's/^geovae //')
    END_VERSIONS
    """
}
