// A cell's trained weights on disk: save after training, load for the probe.
#include "saved_weights.hpp"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "normlab/files.hpp"
#include "normlab/npy.hpp"
#include "shapes.hpp"

namespace normlab {
namespace {

namespace fs = std::filesystem;

const char* const kIndexName = "weights.json";
const char* const kFormat = "normlab trained weights";
constexpr int kVersion = 1;
// An index lists a few hundred tensors; anything far larger is not one.
constexpr std::uintmax_t kMaxIndexBytes = 16u << 20;

// One tensor of the model as the index lists it: a parameter, or one running
// state entry of a norm. `value` points into the model.
struct Tensor {
  std::string kind, name;
  xt::xarray<float>* parameter = nullptr;  // kind "parameter"
  Norm<float>* norm = nullptr;             // kind "state"
  const xt::xarray<float>& value() const { return parameter ? *parameter : norm->state(name); }
};

std::vector<Tensor> tensors_of(Model<float>& model) {
  std::vector<Tensor> all;
  for (const ParameterRef<float>& p : model.parameters())
    all.push_back({"parameter", p.name, p.value});
  for (Norm<float>* norm : model.norms())
    for (const std::string& name : norm->state_names())
      all.push_back({"state", name, nullptr, norm});
  return all;
}

std::string file_name(std::size_t k) {
  char name[32];
  std::snprintf(name, sizeof name, "weight_%03zu.npy", k);
  return name;
}

nlohmann::json shape_json(const xt::xarray<float>& x) {
  return nlohmann::json(std::vector<std::size_t>(x.shape().begin(), x.shape().end()));
}

// What the index must say about the model, for a cell of this run.
nlohmann::json identity(const ExperimentConfig& config, const Cell& cell) {
  return {{"cell", cell.id()},
          {"model", config.model},
          {"norm_spec", cell.norm},
          {"activation_layout", to_string(config.activation_layout)}};
}

[[noreturn]] void fail(const fs::path& file, const std::string& why) {
  throw std::runtime_error(file.string() + ": " + why);
}

nlohmann::json read_index(const fs::path& path) {
  std::error_code ec;
  const std::uintmax_t bytes = fs::file_size(path, ec);
  if (ec) fail(path, "cannot read (" + ec.message() + ")");
  if (bytes > kMaxIndexBytes)
    fail(path, "is " + std::to_string(bytes) + " bytes, not a weights index (at most " +
                   std::to_string(kMaxIndexBytes) + "); delete the cell's folder and re-run it");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in && !in.eof()) fail(path, "cannot read");
  try {
    return parse_json(text.str(), path.string());
  } catch (const JsonInputError& e) {
    throw std::runtime_error(e.what());  // names the file and the line
  }
}

}  // namespace

fs::path cell_folder(const fs::path& run_dir, const std::string& cell_id) {
  return run_dir / "cells" / cell_id;
}

bool has_cell_weights(const fs::path& run_dir, const std::string& cell_id) {
  std::error_code ec;
  return fs::exists(cell_folder(run_dir, cell_id) / kIndexName, ec);
}

void save_cell_weights(const fs::path& run_dir, const ExperimentConfig& config, const Cell& cell,
                       Model<float>& model) {
  StagedOutput staged(cell_folder(run_dir, cell.id()));
  nlohmann::json listed = nlohmann::json::array();
  const std::vector<Tensor> tensors = tensors_of(model);
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    const Tensor& t = tensors[k];
    staged.write(file_name(k), [&](const std::string& path) { save_npy(path, t.value()); });
    listed.push_back({{"file", file_name(k)},
                      {"kind", t.kind},
                      {"name", t.name},
                      {"shape", shape_json(t.value())}});
  }
  nlohmann::json index = {{"format", kFormat}, {"version", kVersion}};
  index.update(identity(config, cell));
  index["tensors"] = std::move(listed);
  staged.write(kIndexName,
               [&](const std::string& path) { write_file(path, index.dump(1) + "\n"); });
  staged.commit();
}

void load_cell_weights(const fs::path& run_dir, const ExperimentConfig& config, const Cell& cell,
                       Model<float>& model) {
  const fs::path folder = cell_folder(run_dir, cell.id()), index_path = folder / kIndexName;
  const nlohmann::json index = read_index(index_path);
  const std::string fix = "; delete " + folder.string() + " to have the probe re-train the cell";
  if (!index.is_object() || index.value("format", nlohmann::json()) != kFormat ||
      index.value("version", nlohmann::json()) != kVersion)
    fail(index_path, std::string("not a weights index of this version (expected \"format\": \"") +
                         kFormat + "\", \"version\": " + std::to_string(kVersion) + ")" + fix);
  const nlohmann::json expected = identity(config, cell);
  for (auto item = expected.begin(); item != expected.end(); ++item)
    if (index.value(item.key(), nlohmann::json()) != item.value())
      fail(index_path, "\"" + item.key() + "\" is " +
                           index.value(item.key(), nlohmann::json()).dump() +
                           " but the run's cell has " + item.value().dump() + fix);
  const std::vector<Tensor> tensors = tensors_of(model);
  const nlohmann::json& listed = index.value("tensors", nlohmann::json());
  if (!listed.is_array() || listed.size() != tensors.size())
    fail(index_path, "lists " + (listed.is_array() ? std::to_string(listed.size()) : "no") +
                         " tensors; the model has " + std::to_string(tensors.size()) + fix);
  // Everything is read and checked before the model is touched.
  std::vector<xt::xarray<float>> values;
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    const nlohmann::json& entry = listed[k];
    const Tensor& t = tensors[k];
    // The file name is ours, not the index's: a listed name cannot point elsewhere.
    const fs::path file = folder / file_name(k);
    if (!entry.is_object() || entry.value("file", nlohmann::json()) != file_name(k) ||
        entry.value("kind", nlohmann::json()) != t.kind ||
        entry.value("name", nlohmann::json()) != t.name)
      fail(index_path, "tensor " + std::to_string(k) + " is " + entry.dump() +
                           ", but the model's is " + t.kind + " " + t.name + " in " + file_name(k) +
                           fix);
    xt::xarray<float> value = load_npy<float>(file.string());  // errors name the file
    if (value.shape() != t.value().shape())
      fail(file, "shape " + shape_text(value.shape()) + ", but the model's " + t.name + " is " +
                     shape_text(t.value().shape()) + fix);
    values.push_back(std::move(value));
  }
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    const Tensor& t = tensors[k];
    if (t.parameter)
      *t.parameter = values[k];
    else
      t.norm->set(t.name, values[k]);
  }
  // Through set(), a norm knows its parameters were given (WeightNorm then
  // keeps g rather than setting it from v on the first forward).
  for (Norm<float>* norm : model.norms())
    for (const std::string& name : norm->parameter_names()) {
      const xt::xarray<float> value = norm->parameter(name).value;
      norm->set(name, value);
    }
}

}  // namespace normlab
