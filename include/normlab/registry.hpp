// The norm registry: every norm type, its options and what it is. Each norm's
// source file registers itself (src/norms/); everything that lists norms or
// treats one specially reads this instead of a list of names.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace normlab {

// One key of a norm spec.
struct NormOption {
  std::string key;
  std::string kind;  // what values it takes: "a number >= 0", "true or false", ...
  nlohmann::json default_value;
  std::string help;
  // False for a key added after specs were first resolved ("layout"):
  // resolve_spec and to_json leave it out while it has its default, so that a
  // resolved spec, and a run folder's config, written before it stay the same.
  bool resolved_at_default = true;
};

// What a norm with given options is, for the code around it (models,
// experiments, probe, bench).
struct NormTraits {
  bool batch_statistics = false;  // statistics span the samples of a batch (the study's subject)
  bool needs_spatial = false;     // refuses (N, C) input: its groups are within one channel
  bool running_state = false;     // keeps running statistics (eval uses them)
  bool train_uses_state = false;  // a train forward reads state earlier ones updated (Batch
                                  // Renorm's r and d, MABN's moving averages): its output is
                                  // not a function of the batch alone
  bool reparameterizes_weight = false;  // normalizes a layer's weight, not its activations
  bool includes_activation = false;     // its output is already activated (FRN's TLU,
                                        // EvoNorm-S0): models add no ReLU after it
  std::size_t virtual_batch_size = 0;   // >0: batch statistics per run of this many samples
  bool channels_last = false;           // takes "layout": "nhwc" with these options (LayerNorm and
                                        // RMSNorm: with channel_affine)
  bool torch_peer = false;              // scripts/compare_torch.py times it against a PyTorch peer
  bool needs_mpi = false;               // a build without MPI refuses it (see built_with_mpi())
  bool identity = false;  // changes nothing ("none"): models leave it out and keep the
                          // layer's bias
  // The weight norm its paper applies to the conv or linear layer in front of
  // it (MABN: "weight_centering"); models do so. Empty: none.
  std::string preceding_weight;
  // Its statistics follow the weight of the conv or linear layer in front of
  // it (Cross-Iteration BN's compensation): models connect that layer to it
  // (Norm::connect_preceding_layer).
  bool reads_preceding_layer = false;
  std::vector<std::string> parameters;  // names, in the order they are listed
  std::vector<std::string> state;
};

// A registered norm type.
struct NormInfo {
  std::string type;     // the spec's "type"
  std::string summary;  // one line: what it normalizes over, and the reference
  std::vector<NormOption> options;
  NormTraits traits;  // with the default options
};

// Every registered type, sorted by name.
const std::vector<NormInfo>& registered_norms();

// Names accepted in a spec's "type", sorted.
std::vector<std::string> norm_types();

// The entry of a type; std::invalid_argument listing the registered names
// when there is none.
const NormInfo& norm_info(const std::string& type);

// The spec with every option present (defaults filled in; a key whose
// NormOption::resolved_at_default is false only when not at its default); unknown types and
// keys and wrongly typed or out-of-range values are std::invalid_argument
// naming the key. make_norm(resolve_spec(s)) builds the same norm as make_norm(s).
nlohmann::json resolve_spec(const nlohmann::json& spec);

// The traits of a norm with these options (the spec is resolved first).
NormTraits norm_traits(const nlohmann::json& spec);

// Whether this build can make a norm with these traits (false: it needs MPI
// and the build has none), and the reason when it cannot ("" when it can).
std::string why_unavailable(const NormTraits& traits);

// The spec one layer of a model uses for a norm chosen as `spec`, at a layer
// of `channels` outputs that has spatial positions or not: e.g. GroupNorm
// takes min(groups, channels) groups; LayerNorm normalizes per sample with a
// per-channel affine after a convolution. Throws std::invalid_argument when
// the norm cannot work there (FRN without spatial positions).
nlohmann::json layer_spec(const nlohmann::json& spec, std::size_t channels, bool spatial);

// "a string", "a number", ... for error messages.
const char* json_kind(const nlohmann::json& value);

}  // namespace normlab
