// Experiment configs: parsing with defaults, validation naming JSON paths,
// --set overrides, and the grid of cells.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "json_reader.hpp"
#include "normlab/experiment.hpp"
#include "normlab/model.hpp"
#include "normlab/registry.hpp"
#include "train_model.hpp"

namespace normlab {

double OptimizerConfig::lr_at(std::size_t epoch, std::size_t batch_size) const {
  double rate = linear_scaling ? lr * double(batch_size) / base_batch : lr;
  for (long long drop : drop_epochs)
    if (static_cast<long long>(epoch) >= drop) rate *= drop_factor;
  return rate;
}

namespace {

DatasetConfig parse_dataset(JsonReader r) {
  DatasetConfig d;
  d.type = r.string("type");
  if (d.type == "fashion-mnist") {
    d.path = r.string("path", "/usr/share/datasets/fashion-mnist");
    d.mean = r.number("mean", 0.2860);
    d.std = r.number("std", 0.3530);
  } else if (d.type == "mnist") {
    d.path = r.string("path");
    d.mean = r.number("mean", 0.1307);
    d.std = r.number("std", 0.3081);
  } else if (d.type == "synthetic") {
    d.classes = std::size_t(r.integer("classes", 10));
    d.seed = std::uint64_t(r.integer("seed", 0));
    d.mean = r.number("mean", 0.0);
    d.std = r.number("std", 1.0);
    if (d.classes < 2) r.fail("classes", "expected at least 2 classes");
  } else {
    r.fail("type", "unknown dataset '" + d.type + "' (use fashion-mnist, mnist or synthetic)");
  }
  d.train_size = r.integer("train_size", d.type == "synthetic" ? 2000 : -1);
  d.test_size = r.integer("test_size", d.type == "synthetic" ? 500 : -1);
  if (d.type == "synthetic" && (d.train_size < 1 || d.test_size < 1))
    r.fail("train_size", "synthetic data needs positive train_size and test_size");
  d.subset = r.string("subset", "first");
  if (d.subset != "first" && d.subset != "random")
    r.fail("subset", "expected \"first\" or \"random\", got \"" + d.subset + "\"");
  d.subset_seed = std::uint64_t(r.integer("subset_seed", 0));
  if (!(d.std > 0)) r.fail("std", "expected a positive number");
  r.finish();
  return d;
}

OptimizerConfig parse_optimizer(JsonReader r) {
  OptimizerConfig o;
  o.lr = r.number("lr", 0.1);
  o.base_batch = r.number("base_batch", 32);
  o.linear_scaling = r.boolean("linear_scaling", true);
  o.momentum = r.number("momentum", 0.9);
  o.weight_decay = r.number("weight_decay", 5e-4);
  JsonReader schedule = r.object("schedule");
  o.drop_epochs = schedule.integer_list("drop_epochs", {});
  o.drop_factor = schedule.number("factor", 0.1);
  schedule.finish();
  if (!(o.lr > 0)) r.fail("lr", "expected a positive number");
  if (!(o.base_batch > 0)) r.fail("base_batch", "expected a positive number");
  if (o.momentum < 0 || o.momentum >= 1) r.fail("momentum", "expected a number in [0, 1)");
  if (o.weight_decay < 0) r.fail("weight_decay", "expected a number >= 0");
  r.finish();
  return o;
}

// "batch" or {"type": "batch", ...} -> a spec object; checked against the model.
nlohmann::json parse_norm(const nlohmann::json& entry, const std::string& path,
                          const std::string& model) {
  nlohmann::json spec =
      entry.is_string() ? nlohmann::json{{"type", entry.get<std::string>()}} : entry;
  if (!spec.is_object())
    throw std::invalid_argument(path + ": expected a norm name or a norm spec object, got " +
                                json_kind(entry));
  try {
    build_model<float>(model, spec);  // the model knows which norms fit it
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(path + ": " + e.what());
  }
  return spec;
}

std::vector<std::size_t> positive_list(JsonReader& r, const std::string& key) {
  const std::vector<long long> values = r.integer_list(key, {});
  if (values.empty()) r.fail(key, "expected a non-empty list");
  std::vector<std::size_t> out;
  for (long long v : values) {
    if (v < 0) r.fail(key, "expected non-negative integers, got " + std::to_string(v));
    out.push_back(std::size_t(v));
  }
  return out;
}

}  // namespace

ExperimentConfig parse_config(const nlohmann::json& config) {
  JsonReader r(config, "");
  ExperimentConfig c;
  c.name = r.string("name", "experiment");
  c.dataset = parse_dataset(r.object("dataset"));
  c.model = r.string("model", "mlp2");
  if (c.model != "cnn3" && c.model != "mlp2")
    r.fail("model", "unknown model '" + c.model + "' (use cnn3 or mlp2)");

  const nlohmann::json& norms = r.raw("norms");
  if (!norms.is_array() || norms.empty())
    r.fail("norms", std::string("expected a non-empty list of norms, got ") + json_kind(norms));
  for (std::size_t i = 0; i < norms.size(); ++i)
    c.norms.push_back(parse_norm(norms[i], "norms[" + std::to_string(i) + "]", c.model));

  c.batch_sizes = positive_list(r, "batch_sizes");
  for (std::size_t b : c.batch_sizes)
    if (b < 1) r.fail("batch_sizes", "batch sizes must be at least 1");
  for (const nlohmann::json& norm : c.norms) {
    const std::string type = norm["type"].get<std::string>();
    const bool per_batch = model_norm_traits(norm).batch_statistics;
    for (std::size_t b : c.batch_sizes)
      if (b < 2 && c.model == "mlp2" && per_batch && skip_reason(norm, b).empty())
        r.fail("batch_sizes",
               type + " norm in mlp2 needs batch size >= 2 (one value per channel otherwise)");
  }
  // A batch larger than the training set would train on nothing (0 steps).
  if (c.dataset.train_size >= 0)
    for (std::size_t b : c.batch_sizes)
      if (b > std::size_t(c.dataset.train_size))
        r.fail("batch_sizes", "batch size " + std::to_string(b) +
                                  " is larger than dataset.train_size (" +
                                  std::to_string(c.dataset.train_size) + ")");
  for (std::size_t s : positive_list(r, "seeds")) c.seeds.push_back(s);
  c.epochs = std::size_t(r.integer("epochs", 1));
  if (c.epochs < 1) r.fail("epochs", "expected at least 1");
  c.optimizer = parse_optimizer(r.object("optimizer"));

  JsonReader eval = r.object("evaluation");
  c.evaluation.batch_size = std::size_t(eval.integer("batch_size", 1000));
  c.evaluation.batch_stats_accuracy = eval.boolean("batch_stats_accuracy", true);
  const long long precise = eval.integer("precise_bn_batches", 0);
  if (precise < 0) eval.fail("precise_bn_batches", "expected an integer >= 0 (0: off)");
  c.evaluation.precise_bn_batches = std::size_t(precise);
  if (c.evaluation.batch_size < 1) eval.fail("batch_size", "expected at least 1");
  eval.finish();

  JsonReader probe = r.object("probe");
  const long long probe_batches = probe.integer("batches", 200);
  if (probe_batches < 1) probe.fail("batches", "expected at least 1");
  c.probe.batches = std::size_t(probe_batches);
  c.probe.seed = std::uint64_t(probe.integer("seed", 0));
  probe.finish();

  c.output = r.string("output", "out/" + c.name);
  const long long workers = r.integer("workers", 1);
  if (workers < 1) r.fail("workers", "expected at least 1");
  c.workers = std::size_t(workers);

  JsonReader distributed = r.object("distributed");
  if (distributed.has("ranks_per_cell")) {
    const nlohmann::json& given = distributed.raw("ranks_per_cell");
    std::vector<long long> ranks;
    if (given.is_number_integer())
      ranks = {given.get<long long>()};
    else if (given.is_array() && !given.empty() &&
             std::all_of(given.begin(), given.end(),
                         [](const auto& v) { return v.is_number_integer(); }))
      ranks = given.get<std::vector<long long>>();
    else
      distributed.fail("ranks_per_cell", std::string("expected a positive integer or a non-empty "
                                                     "list of them, got ") +
                                             json_kind(given));
    c.ranks_per_cell.clear();
    for (long long rank_count : ranks) {
      if (rank_count < 1)
        distributed.fail("ranks_per_cell",
                         "expected positive integers, got " + std::to_string(rank_count));
      if (std::count(ranks.begin(), ranks.end(), rank_count) > 1)
        distributed.fail("ranks_per_cell", "lists " + std::to_string(rank_count) + " twice");
      c.ranks_per_cell.push_back(std::size_t(rank_count));
    }
    if (std::any_of(ranks.begin(), ranks.end(), [](long long v) { return v > 1; }))
      require_mpi(distributed.path_of("ranks_per_cell"));
  }
  distributed.finish();
  r.finish();

  const DatasetConfig& d = c.dataset;
  nlohmann::json dataset = {
      {"type", d.type},     {"train_size", d.train_size},   {"test_size", d.test_size},
      {"subset", d.subset}, {"subset_seed", d.subset_seed}, {"mean", d.mean},
      {"std", d.std}};
  if (d.type == "synthetic") {
    dataset["classes"] = d.classes;
    dataset["seed"] = d.seed;
  } else {
    dataset["path"] = d.path;
  }
  const OptimizerConfig& o = c.optimizer;
  c.resolved = {{"name", c.name},
                {"dataset", dataset},
                {"model", c.model},
                {"norms", c.norms},
                {"batch_sizes", c.batch_sizes},
                {"seeds", c.seeds},
                {"epochs", c.epochs},
                {"optimizer",
                 {{"lr", o.lr},
                  {"base_batch", o.base_batch},
                  {"linear_scaling", o.linear_scaling},
                  {"momentum", o.momentum},
                  {"weight_decay", o.weight_decay},
                  {"schedule", {{"drop_epochs", o.drop_epochs}, {"factor", o.drop_factor}}}}},
                {"evaluation",
                 {{"batch_size", c.evaluation.batch_size},
                  {"batch_stats_accuracy", c.evaluation.batch_stats_accuracy}}},
                {"probe", {{"batches", c.probe.batches}, {"seed", c.probe.seed}}},
                {"output", c.output},
                {"workers", c.workers}};
  // Only when set, so that folders started before the option existed still resume.
  if (c.ranks_per_cell != std::vector<std::size_t>{1})
    c.resolved["distributed"] = {{"ranks_per_cell", c.ranks_per_cell}};
  // Only when on, so that folders started before the option existed still resume.
  if (c.evaluation.precise_bn_batches > 0)
    c.resolved["evaluation"]["precise_bn_batches"] = c.evaluation.precise_bn_batches;
  return c;
}

namespace {

// Sets config[a][b][c] = value for "a.b.c=value", creating objects on the way.
void apply_set(nlohmann::json& config, const std::string& assignment) {
  const std::size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw std::invalid_argument("--set '" + assignment + "': expected key.path=value");
  const std::string path = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text;  // a bare word is a string
  nlohmann::json* node = &config;
  std::stringstream keys(path);
  std::string key;
  std::vector<std::string> parts;
  while (std::getline(keys, key, '.')) parts.push_back(key);
  if (path.back() == '.') parts.push_back("");  // getline drops a trailing empty key
  std::string walked;                           // the path so far, for messages
  for (const std::string& part : parts) {
    if (part.empty()) throw std::invalid_argument("--set '" + assignment + "': empty key in path");
    if (node->is_null()) *node = nlohmann::json::object();  // a level the file leaves out
    if (!node->is_object())
      throw std::invalid_argument("--set '" + assignment +
                                  "': " + (walked.empty() ? std::string("the config") : walked) +
                                  " is not an object");
    node = &(*node)[part];
    walked += (walked.empty() ? "" : ".") + part;
  }
  *node = value;
}

}  // namespace

nlohmann::json read_config_file(const std::string& path, const std::vector<std::string>& sets) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open config file");
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error(path + ": not valid JSON (" + e.what() + ")");
  }
  for (const std::string& s : sets) apply_set(config, s);
  return config;
}

std::string Cell::norm_label() const {
  std::string label = norm.at("type").get<std::string>();
  std::string extra;
  for (const auto& [key, value] : norm.items())
    if (key != "type") extra += (extra.empty() ? "" : ",") + key + "=" + value.dump();
  return extra.empty() ? label : label + "(" + extra + ")";
}

std::string Cell::row_label() const {
  return ranks > 1 ? norm_label() + " R=" + std::to_string(ranks) : norm_label();
}

std::string Cell::id() const {
  return norm_label() + "/B" + std::to_string(batch_size) +
         (ranks > 1 ? "/R" + std::to_string(ranks) : "") + "/seed" + std::to_string(seed);
}

std::string skip_reason(const nlohmann::json& norm_spec, std::size_t batch_size) {
  const std::size_t v = model_norm_traits(norm_spec).virtual_batch_size;
  if (v == 0) return "";
  const std::string b = std::to_string(batch_size), vb = std::to_string(v);
  if (batch_size % v != 0)
    return "batch size " + b + " does not split into virtual batches of " + vb;
  if (batch_size == v)
    return "batch size " + b + " equals virtual_batch_size " + vb + ": plain batch norm";
  return "";
}

std::vector<Cell> grid_cells(const ExperimentConfig& config) {
  std::vector<Cell> cells;
  for (const nlohmann::json& norm : config.norms)
    for (std::size_t b : config.batch_sizes)
      for (std::size_t ranks : config.ranks_per_cell)
        for (std::uint64_t seed : config.seeds) {
          Cell cell;
          cell.index = cells.size();
          cell.norm = norm;
          cell.batch_size = b;
          cell.ranks = ranks;
          cell.seed = seed;
          cell.skipped = skip_reason(norm, b);
          cells.push_back(cell);
        }
  return cells;
}

}  // namespace normlab
