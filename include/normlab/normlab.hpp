// normlab: the normalization family on one shared reduction engine.
// Including this header brings in the whole public API.
#pragma once

#include "normlab/analysis.hpp"
#include "normlab/blas.hpp"
#include "normlab/data.hpp"
#include "normlab/distributed.hpp"
#include "normlab/engine.hpp"
#include "normlab/experiment.hpp"
#include "normlab/files.hpp"
#include "normlab/layers.hpp"
#include "normlab/model.hpp"
#include "normlab/norm.hpp"
#include "normlab/npy.hpp"
#include "normlab/process.hpp"
#include "normlab/registry.hpp"
#include "normlab/threads.hpp"
#include "normlab/version.hpp"
