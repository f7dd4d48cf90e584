process GEOVAE_REPORT {
    tag "$meta.id"
    label 'process_single'

    conda "${moduleDir}/environment.yml"
    // built from the repository's Dockerfile (no published image): docker build -t geovae:0.2.0 .
    container "geovae:0.2.0"

    input:
    tuple val(meta), path(h5ad), path(reference)

    output:
    tuple val(meta), path("${prefix}.html"), emit: html
    path "versions.yml"                    , emit: versions
    tuple val("${task.process}"), val('geovae'), eval("geovae --version | sed 's/^geovae //'"), emit: versions_geovae, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    // geovae report has no --threads: the task's cores cap the numeric libraries' threads
    def args = task.ext.args ?: ''
    def ref = reference ? "--reference ${reference}" : ''
    prefix = task.ext.prefix ?: "${meta.id}.report"
    """
    export OMP_NUM_THREADS=${task.cpus}
    geovae report ${h5ad} \\
        ${ref} \\
        --out ${prefix}.html \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        geovae: \$(geovae --version | sed 's/^geovae //')
    END_VERSIONS
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}.report"
    """
    touch ${prefix}.html

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        geovae: \$(geovae --version | sed 's/^geovae //')
    END_VERSIONS
    """
}
