// Experiment configs: parsing with defaults, validation naming JSON paths,
// --set overrides, and the grid of cells.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

#include "io/safe_open.hpp"
#include "io/utf8.hpp"
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

double OptimizerConfig::lr_at_step(std::size_t step, std::size_t total_steps,
                                   std::size_t steps_per_epoch, std::size_t batch_size) const {
  double rate = lr_at(steps_per_epoch ? step / steps_per_epoch : 0, batch_size);
  for (double fraction : drop_fractions)
    if (double(step) >= fraction * double(total_steps)) rate *= drop_factor;
  return rate;
}

std::size_t BudgetConfig::steps(std::size_t steps_per_epoch, std::size_t global_batch) const {
  switch (unit) {
    case Unit::steps:
      return amount;
    case Unit::images:
      return global_batch ? amount / global_batch : 0;
    default:
      return amount * steps_per_epoch;
  }
}

std::string BudgetConfig::text() const {
  const char* units[] = {"epochs", "steps", "images"};
  return std::to_string(amount) + " " + units[int(unit)];
}

namespace {

// A learning-rate multiplier as search run ids and messages write it: "0.5", "2".
std::string multiplier_text(double multiplier) {
  char text[32];
  std::snprintf(text, sizeof text, "%.10g", multiplier);
  return text;
}

std::string format_number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
}

// Upper bounds of the config's counts: far above any real use, low enough
// that products of them (images per epoch, epochs x steps) cannot overflow.
constexpr long long kMaxSamples = 10'000'000;  // dataset sizes (Fashion-MNIST: 60000)
constexpr long long kMaxBatch = 1'000'000;     // batch sizes
constexpr long long kMaxCount = 1'000'000;     // epochs, probe and precise BN batches
constexpr long long kMaxWorkers = 4096;
constexpr long long kMaxThreadsPerCell = 1024;
constexpr long long kMaxRanks = 65536;
constexpr long long kMaxClasses = 256;  // synthetic data (make_synthetic)

// Budgets in steps or images.
constexpr long long kMaxBudget = 1'000'000'000'000;

// A list of finite numbers (empty when absent).
std::vector<double> number_list(JsonReader& r, const std::string& key) {
  if (!r.has(key)) return {};
  const nlohmann::json& list = r.raw(key);
  if (!list.is_array())
    r.fail(key, std::string("expected a list of numbers, got ") + json_kind(list));
  std::vector<double> values;
  for (const nlohmann::json& v : list) {
    if (!v.is_number() || !std::isfinite(v.get<double>()))
      r.fail(key, std::string("expected a list of numbers, got an entry that is ") + json_kind(v));
    values.push_back(v.get<double>());
  }
  return values;
}

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
  d.validation_size = r.integer("validation_size", 0, 0, kMaxSamples);
  d.validation_seed = r.unsigned_integer("validation_seed", 0);
  if (d.train_size > 0 && d.validation_size >= d.train_size)
    r.fail("validation_size", "expected fewer than train_size (" + std::to_string(d.train_size) +
                                  ") samples: the cells train on the rest");
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
  o.drop_fractions = number_list(schedule, "drop_at");
  for (double f : o.drop_fractions)
    if (!(f > 0 && f < 1))
      schedule.fail("drop_at", "expected fractions of the budget strictly between 0 and 1, got " +
                                   nlohmann::json(f).dump());
  if (!o.drop_epochs.empty() && !o.drop_fractions.empty())
    schedule.fail("drop_at", "give drop_epochs or drop_at, not both");
  o.drop_factor = schedule.number("factor", 0.1);
  // A factor of 0 or less would train on with a zero or negative learning rate.
  if (!(o.drop_factor > 0))
    schedule.fail("factor",
                  "expected a positive number (the learning rate is multiplied by it "
                  "at each drop epoch), got " +
                      format_number(o.drop_factor));
  for (std::size_t i = 0; i < o.drop_epochs.size(); ++i)
    if (std::count(o.drop_epochs.begin(), o.drop_epochs.begin() + long(i), o.drop_epochs[i]))
      schedule.fail("drop_epochs", "lists " + std::to_string(o.drop_epochs[i]) +
                                       " twice (the rate would drop twice at that epoch)");
  schedule.finish();
  o.lr_multipliers = number_list(r, "lr_multipliers");
  if (r.has("lr_multipliers") && o.lr_multipliers.empty())
    r.fail("lr_multipliers",
           "expected a non-empty list of positive numbers (leave it out for "
           "no search)");
  for (std::size_t i = 0; i < o.lr_multipliers.size(); ++i) {
    const double m = o.lr_multipliers[i];
    if (!(m > 0))
      r.fail("lr_multipliers", "expected positive numbers, got " + nlohmann::json(m).dump());
    if (std::find(o.lr_multipliers.begin(), o.lr_multipliers.begin() + long(i), m) !=
        o.lr_multipliers.begin() + long(i))
      r.fail("lr_multipliers", "lists " + multiplier_text(m) + " twice");
  }
  if (!(o.lr > 0)) r.fail("lr", "expected a positive number");
  if (!(o.base_batch > 0)) r.fail("base_batch", "expected a positive number");
  if (o.momentum < 0 || o.momentum >= 1) r.fail("momentum", "expected a number in [0, 1)");
  if (o.weight_decay < 0) r.fail("weight_decay", "expected a number >= 0");
  r.finish();
  return o;
}

// "epochs": N (the old key) or "budget": {"epochs" | "steps" | "images": N}.
BudgetConfig parse_budget(JsonReader& r) {
  BudgetConfig budget;
  if (!r.has("budget")) {
    budget.amount = std::size_t(r.integer("epochs", 1, 1, kMaxCount));
    return budget;
  }
  if (r.has("epochs")) r.fail("epochs", "give the budget once: \"epochs\" or \"budget\", not both");
  JsonReader b = r.object("budget");
  const std::pair<const char*, BudgetConfig::Unit> units[] = {
      {"epochs", BudgetConfig::Unit::epochs},
      {"steps", BudgetConfig::Unit::steps},
      {"images", BudgetConfig::Unit::images}};
  int given = 0;
  for (const auto& [key, unit] : units)
    if (b.has(key)) {
      ++given;
      budget.unit = unit;
      budget.amount =
          std::size_t(b.integer(key, 1, 1, key == std::string("epochs") ? kMaxCount : kMaxBudget));
    }
  if (given != 1)
    r.fail("budget",
           "expected exactly one of \"epochs\", \"steps\" or \"images\", e.g. "
           "{\"steps\": 2000}");
  b.finish();
  return budget;
}

// The grid's cells (norms x batch sizes x ranks_per_cell values x seeds) at
// most kMaxGridCells, counted from the lists' lengths before any is read.
void check_grid_size(const nlohmann::json& config) {
  const auto length = [&](const nlohmann::json* list) -> std::size_t {
    return list && list->is_array() ? std::max<std::size_t>(list->size(), 1) : 1;
  };
  const auto at = [&](const nlohmann::json& object, const char* key) -> const nlohmann::json* {
    const auto it = object.find(key);
    return it == object.end() ? nullptr : &*it;
  };
  const nlohmann::json* distributed = at(config, "distributed");
  const nlohmann::json* ranks =
      distributed && distributed->is_object() ? at(*distributed, "ranks_per_cell") : nullptr;
  const std::size_t lengths[] = {length(at(config, "norms")), length(at(config, "batch_sizes")),
                                 length(ranks), length(at(config, "seeds"))};
  double cells = 1;  // a double: the product of four lengths cannot overflow it
  for (std::size_t n : lengths) cells *= double(n);
  if (cells > double(kMaxGridCells)) {
    char count[64];
    std::snprintf(count, sizeof count, "%.0f", cells);
    throw std::invalid_argument("the grid has " + std::string(count) + " cells (" +
                                std::to_string(lengths[0]) + " norms x " +
                                std::to_string(lengths[1]) + " batch sizes x " +
                                std::to_string(lengths[2]) + " ranks_per_cell values x " +
                                std::to_string(lengths[3]) + " seeds), more than the limit of " +
                                std::to_string(kMaxGridCells) + " (split it into several configs)");
  }
}

// The learning rate at every batch size must be a finite number: lr * B /
// base_batch (linear scaling), times each search multiplier, and the drops must
// not overflow or underflow a double. The drops only accumulate, so the first
// step and the state after every drop bound every rate in between.
void check_learning_rates(const OptimizerConfig& o, const std::vector<std::size_t>& batch_sizes,
                          const std::vector<std::size_t>& ranks_per_cell) {
  const std::size_t drops = o.drop_epochs.size() + o.drop_fractions.size();
  std::vector<double> multipliers = o.lr_multipliers;
  if (multipliers.empty()) multipliers.push_back(1.0);
  for (std::size_t b : batch_sizes)
    for (std::size_t r : ranks_per_cell)
      for (double m : multipliers)
        for (std::size_t k : {std::size_t(0), drops}) {
          const double rate = m * o.lr_at(0, b * r) * std::pow(o.drop_factor, double(k));
          if (!std::isfinite(rate) || !(rate > 0))
            throw std::invalid_argument(
                "optimizer.lr: the learning rate at batch size " + std::to_string(b * r) +
                (multipliers.size() > 1 ? " and multiplier " + format_number(m) : "") + " after " +
                std::to_string(k) + " drops is " + format_number(rate) +
                " (lr * B / base_batch after the drops must be a positive finite number)");
        }
}

// "batch" or {"type": "batch", ...} -> a spec object; checked against the model.
ConfigNorm parse_norm(const nlohmann::json& entry, const std::string& path,
                      const std::string& model, Layout activation_layout) {
  nlohmann::json spec =
      entry.is_string() ? nlohmann::json{{"type", entry.get<std::string>()}} : entry;
  if (!spec.is_object())
    throw std::invalid_argument(path + ": expected a norm name or a norm spec object, got " +
                                json_kind(entry));
  try {
    build_model<float>(model, spec, activation_layout);  // the model knows which norms fit it
    return {spec, resolve_spec(spec), model_norm_traits(spec)};
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(path + ": " + e.what());
  }
}

// "activation_layout": "nchw" (the default) or "nhwc", which only the
// convolutional models (cnn3, the ResNets) have.
Layout parse_activation_layout(JsonReader& r, const std::string& model) {
  const std::string name = r.string("activation_layout", "nchw");
  if (name != "nchw" && name != "nhwc")
    r.fail("activation_layout",
           "expected \"nchw\" (channels first, the default) or \"nhwc\" "
           "(channels last), got \"" +
               name + "\"");
  if (name == "nhwc" && !model_is_convolutional(model))
    r.fail("activation_layout",
           "\"nhwc\" is for cnn3 and the ResNets: " + model +
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
  std::set<long long> listed;
  for (long long v : values) {
    if (v < 0) r.fail(key, "expected non-negative integers, got " + std::to_string(v));
    if (v > max)
      r.fail(key,
             "expected integers of at most " + std::to_string(max) + ", got " + std::to_string(v));
    if (!listed.insert(v).second)
      r.fail(key, "lists " + std::to_string(v) + " twice (each cell would be trained twice)");
    out.push_back(std::size_t(v));
  }
  return out;
}

}  // namespace

ExperimentConfig parse_config(const nlohmann::json& config) {
  JsonReader r(config, "");
  check_grid_size(config);
  ExperimentConfig c;
  c.name = r.string("name", "experiment");
  c.description = r.string("description", "");
  c.dataset = parse_dataset(r.object("dataset"));
  c.model = r.string("model", "mlp2");
  try {
    model_is_convolutional(c.model);
  } catch (const std::invalid_argument& e) {
    r.fail("model", e.what());
  }
  c.activation_layout = parse_activation_layout(r, c.model);

  const nlohmann::json& norms = r.raw("norms");
  if (!norms.is_array() || norms.empty())
    r.fail("norms", std::string("expected a non-empty list of norms, got ") + json_kind(norms));
  for (std::size_t i = 0; i < norms.size(); ++i) {
    const std::string path = "norms[" + std::to_string(i) + "]";
    c.norms.push_back(parse_norm(norms[i], path, c.model, c.activation_layout));
    // "batch" and {"type": "batch", "eps": 1e-5} alike.
    const auto first = std::find_if(c.norms.begin(), c.norms.end() - 1, [&](const ConfigNorm& n) {
      return n.resolved == c.norms.back().resolved;
    });
    if (first != c.norms.end() - 1)
      throw std::invalid_argument(path + ": the same norm as norms[" +
                                  std::to_string(first - c.norms.begin()) +
                                  "] (each cell would be trained twice; remove one)");
  }

  c.batch_sizes = positive_list(r, "batch_sizes", kMaxBatch);
  for (std::size_t b : c.batch_sizes)
    if (b < 1) r.fail("batch_sizes", "batch sizes must be at least 1");
  for (const ConfigNorm& norm : c.norms) {
    const std::string type = norm.spec["type"].get<std::string>();
    for (std::size_t b : c.batch_sizes)
      if (b < 2 && c.model == "mlp2" && norm.traits.batch_statistics &&
          skip_reason(norm.traits, b).empty())
        r.fail("batch_sizes",
               type + " norm in mlp2 needs batch size >= 2 (one value per channel otherwise)");
  }
  // A batch larger than the training set would train on nothing (0 steps).
  if (c.dataset.train_size >= 0)
    for (std::size_t b : c.batch_sizes)
      if (b > std::size_t(c.dataset.train_size - c.dataset.validation_size))
        r.fail("batch_sizes",
               "batch size " + std::to_string(b) + " is larger than dataset.train_size (" +
                   std::to_string(c.dataset.train_size) +
                   (c.dataset.validation_size
                        ? " less validation_size " + std::to_string(c.dataset.validation_size)
                        : std::string()) +
                   ")");
  for (std::size_t s : positive_list(r, "seeds", std::numeric_limits<long long>::max()))
    c.seeds.push_back(s);
  c.budget = parse_budget(r);
  c.epochs = c.budget.unit == BudgetConfig::Unit::epochs ? c.budget.amount : 0;
  c.optimizer = parse_optimizer(r.object("optimizer"));
  if (!c.optimizer.lr_multipliers.empty() && c.dataset.validation_size == 0)
    r.fail("optimizer",
           "lr_multipliers: the search selects on a validation split; set "
           "dataset.validation_size (samples carved from the training set)");

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
  if (!c.optimizer.lr_multipliers.empty() && c.ranks_per_cell != std::vector<std::size_t>{1})
    r.fail("optimizer",
           "lr_multipliers: the learning-rate search trains each cell in one "
           "process (leave out distributed.ranks_per_cell)");
  r.finish();
  check_learning_rates(c.optimizer, c.batch_sizes, c.ranks_per_cell);

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
  // Only when set, so that folders started before the option existed still resume.
  if (d.validation_size > 0) {
    dataset["validation_size"] = d.validation_size;
    dataset["validation_seed"] = d.validation_seed;
  }
  const OptimizerConfig& o = c.optimizer;
  nlohmann::json norm_specs = nlohmann::json::array();  // as given: cell ids are made from them
  for (const ConfigNorm& norm : c.norms) norm_specs.push_back(norm.spec);
  c.resolved = {{"name", c.name},
                {"dataset", dataset},
                {"model", c.model},
                {"norms", norm_specs},
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
  // Budgets other than epochs, fractional schedules and the search: only when
  // set, so that folders started before the options existed still resume.
  if (c.budget.unit != BudgetConfig::Unit::epochs) {
    c.resolved.erase("epochs");
    c.resolved["budget"] = {
        {c.budget.unit == BudgetConfig::Unit::steps ? "steps" : "images", c.budget.amount}};
  }
  if (!o.drop_fractions.empty()) c.resolved["optimizer"]["schedule"]["drop_at"] = o.drop_fractions;
  if (!o.lr_multipliers.empty()) c.resolved["optimizer"]["lr_multipliers"] = o.lr_multipliers;
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
  // JSON text must be UTF-8: a key or bare word that is not would fail when
  // the config is written. Named with the bytes that are not shown as '?'.
  require_utf8(assignment, "--set '" + clip(utf8_shown(assignment)) + "'");
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
  nlohmann::json config = parse_json(read_bounded(path, kMaxConfigBytes, "config file"), path);
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
    check_model_fits_data(parsed);
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
         (ranks > 1 ? "/R" + std::to_string(ranks) : "") + "/seed" + std::to_string(seed) +
         (search_run ? "/lr_x" + multiplier_text(lr_multiplier) : "");
}

std::string skip_reason(const NormTraits& norm, std::size_t batch_size) {
  const std::size_t v = norm.virtual_batch_size;
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
  for (const ConfigNorm& norm : config.norms)
    for (std::size_t b : config.batch_sizes)
      for (std::size_t ranks : config.ranks_per_cell)
        for (std::uint64_t seed : config.seeds) {
          Cell cell;
          cell.index = cells.size();
          cell.norm = norm.spec;
          cell.norm_traits = norm.traits;
          cell.batch_size = b;
          cell.ranks = ranks;
          cell.seed = seed;
          cell.skipped = skip_reason(norm.traits, b);
          cells.push_back(cell);
        }
  return cells;
}

std::vector<Cell> search_runs(const ExperimentConfig& config, const Cell& cell) {
  std::vector<Cell> runs;
  for (double multiplier : config.optimizer.lr_multipliers) {
    Cell run = cell;
    run.search_run = true;
    run.lr_multiplier = multiplier;
    runs.push_back(run);
  }
  return runs;
}

}  // namespace normlab
