#!/usr/bin/env nextflow
/*
 * geovae on the bundled Kang PBMC data: split -> fit -> transfer -> cluster -> report.
 *
 *   nextflow run workflows/nextflow -profile test            # quick: 200 cells a side, 2 epochs
 *   nextflow run workflows/nextflow -profile test,docker     # in the image: docker build -t geovae:0.2.0 .
 *   nextflow run workflows/nextflow -profile test,conda      # in the modules' environment.yml
 *   nextflow run workflows/nextflow -profile conda,gpu --input my.h5ad --split_key batch \
 *       --reference A --query B --batch_key batch --label_key cell_type --eval_key null
 *
 * Options of each geovae step come from params through ext.args (conf/modules.config).
 * Software: each module names a conda environment file and the geovae container image
 * (profiles conda, docker, singularity / apptainer with --singularity_image FILE.sif).
 */
nextflow.enable.dsl = 2

include { SPLIT_H5AD      } from './modules/local/split/main'
include { GEOVAE_FIT      } from './modules/geovae/fit/main'
include { GEOVAE_TRANSFER } from './modules/geovae/transfer/main'
include { GEOVAE_CLUSTER  } from './modules/geovae/cluster/main'
include { GEOVAE_REPORT   } from './modules/geovae/report/main'

workflow {
    ch_input = Channel.of([ [ id: params.id ], file(params.input, checkIfExists: true) ])

    SPLIT_H5AD ( ch_input )
    GEOVAE_FIT ( SPLIT_H5AD.out.reference )
    GEOVAE_TRANSFER (
        SPLIT_H5AD.out.query,
        GEOVAE_FIT.out.model.join(GEOVAE_FIT.out.h5ad)   // [ meta, model, reference h5ad ]
    )
    GEOVAE_CLUSTER ( GEOVAE_TRANSFER.out.h5ad )

    ch_versions = Channel.empty()
        .mix(SPLIT_H5AD.out.versions, GEOVAE_FIT.out.versions,
             GEOVAE_TRANSFER.out.versions, GEOVAE_CLUSTER.out.versions)
    if (params.report) {
        GEOVAE_REPORT ( GEOVAE_CLUSTER.out.h5ad.join(GEOVAE_TRANSFER.out.joint) )   // [ meta, h5ad, joint ]
        ch_versions = ch_versions.mix(GEOVAE_REPORT.out.versions)
    }
    ch_versions
        .unique()
        .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info", sort: true)
}
