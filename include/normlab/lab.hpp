// normlab::lab, the laboratory built on normlab::core: layers and models, the
// Fashion-MNIST data, experiments (configs, cells, sweeps, records), the
// probe, the analysis behind reports, BLAS and child processes.
#pragma once

#include "normlab/analysis.hpp"
#include "normlab/blas.hpp"
#include "normlab/core.hpp"
#include "normlab/data.hpp"
#include "normlab/experiment.hpp"
#include "normlab/layers.hpp"
#include "normlab/model.hpp"
#include "normlab/process.hpp"
