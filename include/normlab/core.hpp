// normlab::core, the library a program links for its norm layers: the shared
// reduction engine, the norms and their registry, the engine's threads, .npy
// and file helpers, and the process group SyncBatchNorm talks through.
// It includes no header of normlab::lab.
#pragma once

#include "normlab/bfloat16.hpp"
#include "normlab/distributed.hpp"
#include "normlab/engine.hpp"
#include "normlab/files.hpp"
#include "normlab/norm.hpp"
#include "normlab/npy.hpp"
#include "normlab/registry.hpp"
#include "normlab/threads.hpp"
#include "normlab/version.hpp"
