// Experiment configs: parsing with defaults, validation naming JSON paths,
// --set overrides, and the grid of cells.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <optional>
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

// Upper bounds of the config's counts: far above any real use, low enough
// that products of them (images per epoch, epochs x steps) cannot overflow.
constexpr long long kMaxSamples = 10'000'000;  // dataset sizes (Fashion-MNIST: 60000)
constexpr long long kMaxBatch = 1'000'000;     // batch sizes
constexpr long long kMaxCount = 1'000'000;     // epochs, probe and precise BN batches
constexpr long long kMaxWorkers = 4096;
constexpr long long kMaxThreadsPerCell = 1024;
constexpr long long kMaxRanks = 65536;
constexpr long long kMaxClasses = 256;  // synthetic data (make_synthetic)

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
    d.classes = std::size_t(r.integer("classes", 10, 2, kMaxClasses));
    d.seed = r.unsigned_integer("seed", 0);
    d.mean = r.number("mean", 0.0);
    d.std = r.number("std", 1.0);
  } else {
    r.fail("type", "unknown dataset '" + d.type + "' (use fashion-mnist, mnist or synthetic)");
  }
  d.train_size = r.integer("train_size", d.type == "synthetic" ? 2000 : -1, -1, kMaxSamples);
  d.test_size = r.integer("test_size", d.type == "synthetic" ? 500 : -1, -1, kMaxSamples);
  for (const char* key : {"train_size", "test_size"}) {
    const long long size = std::string(key) == "train_size" ? d.train_size : d.test_size;
    if (size == 0 || (size < 0 && d.type == "synthetic"))
      r.fail(key, d.type == "synthetic" ? "synthetic data needs positive train_size and test_size"
                                        : "expected a positive number of samples, or -1 for all");
  }
  d.subset = r.string("subset", "first");
  if (d.subset != "first" && d.subset != "random")
    r.fail("subset", "expected \"first\" or \"random\", got \"" + d.subset + "\"");
  d.subset_seed = r.unsigned_integer("subset_seed", 0);
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
  o.drop_epochs = schedule.integer_list("drop_epochs", {}, 0, kMaxCount);
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
                          const std::string& model, Layout activation_layout) {
  nlohmann::json spec =
      entry.is_string() ? nlohmann::json{{"type", entry.get<std::string>()}} : entry;
  if (!spec.is_object())
    throw std::invalid_argument(path + ": expected a norm name or a norm spec object, got " +
                                json_kind(entry));
  try {
    build_model<float>(model, spec, activation_layout);  // the model knows which norms fit it
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(path + ": " + e.what());
  }
  return spec;
}

// "activation_layout": "nchw" (the default) or "nhwc", which only cnn3 has.
Layout parse_activation_layout(JsonReader& r, const std::string& model) {
  const std::string name = r.string("activation_layout", "nchw");
  if (name != "nchw" && name != "nhwc")
    r.fail("activation_layout",
           "expected \"nchw\" (channels first, the default) or \"nhwc\" "
           "(channels last), got \"" +
               name + "\"");
  if (name == "nhwc" && model != "cnn3")
    r.fail("activation_layout",
           "\"nhwc\" is for cnn3: " + model +
               " has no spatial activations (they are (N, features) in either layout); drop the "
               "key or use \"nchw\"");
  return parse_layout(name);
}

// A non-empty list of integers in [0, max] (errors name the list's key).
std::vector<std::size_t> positive_list(JsonReader& r, const std::string& key, long long max) {
  const std::vector<long long> values = r.integer_list(
      key, {}, std::numeric_limits<long long>::min(), std::numeric_limits<long long>::max());
  if (values.empty()) r.fail(key, "expected a non-empty list");
  std::vector<std::size_t> out;
  for (long long v : values) {
    if (v < 0) r.fail(key, "expected non-negative integers, got " + std::to_string(v));
    if (v > max)
      r.fail(key,
             "expected integers of at most " + std::to_string(max) + ", got " + std::to_string(v));
    if (std::find(out.begin(), out.end(), std::size_t(v)) != out.end())
      r.fail(key, "lists " + std::to_string(v) + " twice (each cell would be trained twice)");
    out.push_back(std::size_t(v));
  }
  return out;
}

}  // namespace

ExperimentConfig parse_config(const nlohmann::json& config) {
  JsonReader r(config, "");
  ExperimentConfig c;
  c.name = r.string("name", "experiment");
  c.description = r.string("description", "");
  c.dataset = parse_dataset(r.object("dataset"));
  c.model = r.string("model", "mlp2");
  if (c.model != "cnn3" && c.model != "mlp2")
    r.fail("model", "unknown model '" + c.model + "' (use cnn3 or mlp2)");
  c.activation_layout = parse_activation_layout(r, c.model);

  const nlohmann::json& norms = r.raw("norms");
  if (!norms.is_array() || norms.empty())
    r.fail("norms", std::string("expected a non-empty list of norms, got ") + json_kind(norms));
  std::vector<nlohmann::json> resolved_norms;  // "batch" and {"type": "batch", "eps": 1e-5} alike
  for (std::size_t i = 0; i < norms.size(); ++i) {
    const std::string path = "norms[" + std::to_string(i) + "]";
    c.norms.push_back(parse_norm(norms[i], path, c.model, c.activation_layout));
    const nlohmann::json& spec = c.norms.back();
    resolved_norms.push_back(spec.at("type") == "none" ? spec : resolve_spec(spec));
    const auto first =
        std::find(resolved_norms.begin(), resolved_norms.end() - 1, resolved_norms.back());
    if (first != resolved_norms.end() - 1)
      throw std::invalid_argument(path + ": the same norm as norms[" +
                                  std::to_string(first - resolved_norms.begin()) +
                                  "] (each cell would be trained twice; remove one)");
  }

  c.batch_sizes = positive_list(r, "batch_sizes", kMaxBatch);
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
  for (std::size_t s : positive_list(r, "seeds", std::numeric_limits<long long>::max()))
    c.seeds.push_back(s);
  c.epochs = std::size_t(r.integer("epochs", 1, 1, kMaxCount));
  c.optimizer = parse_optimizer(r.object("optimizer"));

  JsonReader eval = r.object("evaluation");
  c.evaluation.batch_size = std::size_t(eval.integer("batch_size", 1000, 1, kMaxBatch));
  c.evaluation.batch_stats_accuracy = eval.boolean("batch_stats_accuracy", true);
  const long long precise =
      eval.integer("precise_bn_batches", 0, std::numeric_limits<long long>::min(), kMaxCount);
  if (precise < 0) eval.fail("precise_bn_batches", "expected an integer >= 0 (0: off)");
  c.evaluation.precise_bn_batches = std::size_t(precise);
  eval.finish();

  JsonReader probe = r.object("probe");
  c.probe.batches = std::size_t(probe.integer("batches", 200, 1, kMaxCount));
  c.probe.seed = probe.unsigned_integer("seed", 0);
  probe.finish();

  c.output = r.string("output", "out/" + c.name);
  c.workers = std::size_t(r.integer("workers", 1, 1, kMaxWorkers));
  c.threads_per_cell = std::size_t(r.integer("threads_per_cell", 1, 1, kMaxThreadsPerCell));

  JsonReader distributed = r.object("distributed");
  if (distributed.has("ranks_per_cell")) {
    const nlohmann::json& given = distributed.raw("ranks_per_cell");
    std::vector<long long> ranks;
    for (const nlohmann::json& v : given.is_array() ? given : nlohmann::json::array({given}))
      if (v.is_number_unsigned() && v.get<std::uint64_t>() > std::uint64_t(kMaxRanks))
        distributed.fail("ranks_per_cell", "expected positive integers of at most " +
                                               std::to_string(kMaxRanks) + ", got " + v.dump());
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
      if (rank_count < 1 || rank_count > kMaxRanks)
        distributed.fail("ranks_per_cell", "expected positive integers of at most " +
                                               std::to_string(kMaxRanks) + ", got " +
                                               std::to_string(rank_count));
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
  // Only when set, so that folders started before the option existed still resume.
  if (!c.description.empty()) c.resolved["description"] = c.description;
  // Only when channels last, so that folders started before the option existed still resume.
  if (c.activation_layout != Layout::nchw)
    c.resolved["activation_layout"] = to_string(c.activation_layout);
  // Only when set, so that folders started before the option existed still resume.
  if (c.threads_per_cell != 1) c.resolved["threads_per_cell"] = c.threads_per_cell;
  // Only when on, so that folders started before the option existed still resume.
  if (c.evaluation.precise_bn_batches > 0)
    c.resolved["evaluation"]["precise_bn_batches"] = c.evaluation.precise_bn_batches;
  return c;
}

namespace {

// At most `max` characters of `text`, for quoting user input in messages.
std::string clip(const std::string& text, std::size_t max = 60) {
  return text.size() > max ? text.substr(0, max) + "..." : text;
}

// Letters, digits, spaces and _ - . / (bytes of UTF-8 letters included): a
// --set value taken as a string when it is not JSON.
bool bare_word(const std::string& text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    const unsigned char u = static_cast<unsigned char>(c);
    return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
           u >= 0x80 || c == ' ' || c == '_' || c == '-' || c == '.' || c == '/';
  });
}

// "[batch, group]": a list of bare words or JSON scalars, as --set writes
// norms without quoting each name; nullopt when `text` is not one.
std::optional<nlohmann::json> bare_list(const std::string& text, const std::string& label) {
  if (text.size() < 2 || text.front() != '[' || text.back() != ']') return std::nullopt;
  nlohmann::json list = nlohmann::json::array();
  std::stringstream items(text.substr(1, text.size() - 2));
  for (std::string item; std::getline(items, item, ',');) {
    const std::size_t first = item.find_first_not_of(' '), last = item.find_last_not_of(' ');
    if (first == std::string::npos) return std::nullopt;  // "[a,,b]": not a list of words
    item = item.substr(first, last - first + 1);
    try {
      const nlohmann::json value = parse_json(item, label, 0);
      if (value.is_structured()) return std::nullopt;
      list.push_back(value);
    } catch (const JsonInputError&) {
      if (!bare_word(item)) return std::nullopt;
      list.push_back(item);
    }
  }
  return list;
}

// Levels of lists and objects in `value` (0 for a number); `value` comes
// from parse_json and --set, so the recursion is bounded by twice kMaxJsonDepth.
int depth_of(const nlohmann::json& value) {
  if (!value.is_structured()) return 0;
  int deepest = 0;
  for (const auto& item : value) deepest = std::max(deepest, depth_of(item));
  return deepest + 1;
}

// Sets config[a][b][c] = value for "a.b.c=value", creating objects on the way.
void apply_set(nlohmann::json& config, const std::string& assignment) {
  const std::string label = "--set '" + clip(assignment) + "'";
  const std::size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw std::invalid_argument(label + ": expected key.path=value");
  const std::string path = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  nlohmann::json value;
  try {
    value = parse_json(text, label, 0);
  } catch (const JsonInputError& e) {
    if (e.kind() != JsonInputError::Kind::syntax) throw std::invalid_argument(e.what());
    if (const std::optional<nlohmann::json> list = bare_list(text, label)) {
      value = *list;
    } else if (!bare_word(text)) {
      const std::string why = std::string(e.what()).substr(label.size() + 2);
      throw std::invalid_argument(
          label + ": the value is neither JSON (" + why +
          ") nor a bare word of letters, digits, spaces and _ - . / nor a list of them "
          "([batch, group]) (write other strings as JSON: --set 'key=\"...\"')");
    } else {
      value = text;  // a bare word is a string
    }
  }
  nlohmann::json* node = &config;
  std::stringstream keys(path);
  std::string key;
  std::vector<std::string> parts;
  while (std::getline(keys, key, '.')) {
    parts.push_back(key);
    if (parts.size() > std::size_t(kMaxJsonDepth))
      throw std::invalid_argument(label + ": a key path of more than " +
                                  std::to_string(kMaxJsonDepth) + " keys");
  }
  if (path.back() == '.') parts.push_back("");  // getline drops a trailing empty key
  std::string walked;                           // the path so far, for messages
  for (const std::string& part : parts) {
    if (part.empty()) throw std::invalid_argument(label + ": empty key in path");
    if (node->is_null()) *node = nlohmann::json::object();  // a level the file leaves out
    if (!node->is_object())
      throw std::invalid_argument(label + ": " +
                                  (walked.empty() ? std::string("the config") : walked) +
                                  " is not an object");
    node = &(*node)[part];
    walked += (walked.empty() ? "" : ".") + part;
  }
  *node = value;
  if (depth_of(config) > kMaxJsonDepth)
    throw std::invalid_argument(label + ": makes the config nested deeper than " +
                                std::to_string(kMaxJsonDepth) + " levels");
}

}  // namespace

nlohmann::json read_config_file(const std::string& path, const std::vector<std::string>& sets) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open config file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw std::runtime_error(path + ": cannot read config file");
  nlohmann::json config = parse_json(text.str(), path);
  for (const std::string& s : sets) apply_set(config, s);
  return config;
}

ExperimentConfig load_config(const std::string& path, const std::vector<std::string>& sets) {
  const nlohmann::json config = read_config_file(path, sets);
  const std::string where =
      " (in " + path + (sets.empty() ? "" : " with its --set overrides") + ")";
  try {
    ExperimentConfig parsed = parse_config(config);
    check_dataset(parsed.dataset);  // validate and run refuse the same configs
    return parsed;
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string(e.what()) + where);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string(e.what()) + where);
  }
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
