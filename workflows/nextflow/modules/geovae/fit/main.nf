process GEOVAE_FIT {
    tag "$meta.id"
    label 'process_medium'

    conda "${moduleDir}/environment.yml"
    // built from the repository's Dockerfile (no published image): docker build -t geovae:0.2.0 .
    container "geovae:0.2.0"

    input:
    tuple val(meta), path(h5ad)

    output:
    tuple val(meta), path("${prefix}.h5ad")        , emit: h5ad
    tuple val(meta), path("${prefix}.model")       , emit: model
    tuple val(meta), path("${prefix}.metrics.json"), emit: metrics
    tuple val(meta), path("${prefix}.umap.png")    , emit: plot, optional: true
    path "versions.yml"                            , emit: versions
    tuple val("${task.process}"), val('geovae'), eval("geovae --version | sed 's/^geovae //'"), emit: versions_geovae, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def device = task.accelerator ? 'cuda' : 'cpu'
    prefix = task.ext.prefix ?: "${meta.id}.fit"
    """
    geovae fit ${h5ad} \\
        --out ${prefix}.h5ad \\
        --model-dir ${prefix}.model \\
        --metrics-json ${prefix}.metrics.json \\
        --threads ${task.cpus} \\
        --device ${device} \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        geovae: \$(geovae --version | sed 's/^geovae //')
    END_VERSIONS
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}.fit"
    """
    touch ${prefix}.h5ad
    mkdir ${prefix}.model
    touch ${prefix}.model/config.json ${prefix}.model/weights.pt ${prefix}.model/reference.npz
    echo '{}' > ${prefix}.metrics.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        geovae: \$(geovae --version | sed 's/^geovae //')
    END_VERSIONS
    """
}
