// The batch-statistics probe: how far batch means and variances stray from
// the population's at each batch size, and what that does to a layer's output.
//
// The activations entering layer i come from layers [0, i) in eval mode, with
// the batch-statistics layers before i set to their population statistics. So
// each sample's activation is a fixed function of that sample alone, and the
// only thing that varies between batches is which samples layer i sees.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>

#include "environment.hpp"
#include "io/utf8.hpp"
#include "normlab/analysis.hpp"
#include "normlab/model.hpp"
#include "results_store.hpp"
#include "saved_weights.hpp"
#include "train_model.hpp"

namespace normlab {
namespace {

namespace fs = std::filesystem;

std::string joined(const std::vector<std::string>& words) {
  std::string text;
  for (const auto& w : words) text += (text.empty() ? "" : ", ") + w;
  return text;
}

struct Moments {
  std::vector<double> mean, var;  // per channel; var is biased (divides by the count)
};

// The channels of activations in `layout`: (N, C, ...) or channels last (N, ..., C).
std::size_t channel_count(const xt::xarray<float>& x, Layout layout) {
  return layout == Layout::nhwc ? x.shape(x.dimension() - 1) : x.shape(1);
}

// Per-channel sums over every dimension but the channels' of activations in
// the probed norm's layout.
class MomentAccumulator {
 public:
  explicit MomentAccumulator(Layout layout) : layout_(layout) {}
  void add(const xt::xarray<float>& x) { add(x, 0, x.shape(0)); }
  // Samples [first, first + count) only.
  void add(const xt::xarray<float>& x, std::size_t first, std::size_t count) {
    const std::size_t n = x.shape(0), c = channel_count(x, layout_), s = x.size() / (n * c);
    if (sum_.empty()) sum_.assign(c, 0.0), sum_sq_.assign(c, 0.0);
    if (layout_ == Layout::nhwc) {
      for (std::size_t i = first; i < first + count; ++i)
        for (std::size_t k = 0; k < s; ++k) {
          const float* v = x.data() + (i * s + k) * c;
          for (std::size_t ch = 0; ch < c; ++ch)
            sum_[ch] += v[ch], sum_sq_[ch] += double(v[ch]) * v[ch];
        }
      count_ += count * s;
      return;
    }
    for (std::size_t i = first; i < first + count; ++i)
      for (std::size_t ch = 0; ch < c; ++ch) {
        const float* v = x.data() + (i * c + ch) * s;
        double a = 0, b = 0;
        for (std::size_t k = 0; k < s; ++k) a += v[k], b += double(v[k]) * v[k];
        sum_[ch] += a;
        sum_sq_[ch] += b;
      }
    count_ += count * s;
  }
  Moments moments() const {
    Moments m;
    for (std::size_t ch = 0; ch < sum_.size(); ++ch) {
      const double mean = sum_[ch] / double(count_);
      m.mean.push_back(mean);
      m.var.push_back(std::max(0.0, sum_sq_[ch] / double(count_) - mean * mean));
    }
    return m;
  }

 private:
  Layout layout_;
  std::vector<double> sum_, sum_sq_;
  std::size_t count_ = 0;
};

// Mean and spread (sample standard deviation) of one quantity over batches.
struct Spread {
  std::vector<double> values;
  void add(double v) { values.push_back(v); }
  nlohmann::json mean() const {
    if (values.empty()) return nullptr;
    double sum = 0;
    for (double v : values) sum += v;
    return sum / double(values.size());
  }
  nlohmann::json std() const {
    if (values.size() < 2) return nullptr;
    const double m = mean().get<double>();
    double ss = 0;
    for (double v : values) ss += (v - m) * (v - m);
    return std::sqrt(ss / double(values.size() - 1));
  }
};

// Channels whose population variance is zero carry no scale to measure against.
bool usable(double population_var) {
  return population_var > 1e-20;
}

// RMS over channels of (batch mean - mu) / sigma, and of (batch var - var) / var.
std::pair<double, double> relative_errors(const Moments& batch, const Moments& population) {
  double mean_sq = 0, var_sq = 0;
  std::size_t channels = 0;
  for (std::size_t c = 0; c < population.var.size(); ++c) {
    const double var = population.var[c];
    if (!usable(var)) continue;
    const double dm = batch.mean[c] - population.mean[c], dv = batch.var[c] - var;
    mean_sq += dm * dm / var;
    var_sq += dv * dv / (var * var);
    ++channels;
  }
  if (channels == 0) return {std::nan(""), std::nan("")};
  return {std::sqrt(mean_sq / double(channels)), std::sqrt(var_sq / double(channels))};
}

// ||a - b|| / ||b||.
double relative_l2(const xt::xarray<float>& a, const xt::xarray<float>& b) {
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = double(a.data()[i]) - b.data()[i];
    diff += d * d;
    norm += double(b.data()[i]) * b.data()[i];
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::nan("");
}

xt::xarray<float> as_array(const std::vector<double>& values) {
  xt::xarray<float> a = xt::empty<float>(std::vector<std::size_t>{values.size()});
  std::copy(values.begin(), values.end(), a.begin());
  return a;
}

std::vector<std::size_t> with_batch(std::size_t batch, const Dataset& data) {
  std::vector<std::size_t> shape = {batch};
  shape.insert(shape.end(), data.images.shape().begin() + 1, data.images.shape().end());
  return shape;
}

// A model to probe and what the records say about where it came from.
struct Subject {
  nlohmann::json norm;
  NormTraits traits;  // of norm, in the model
  std::string norm_label;
  Model<float> model;
  nlohmann::json source;  // merged into every record
  bool trained = false;
};

using NormState = std::map<std::string, xt::xarray<float>>;

// Every state entry of a norm: running statistics and, for Batch Renorm, the
// warm-up position num_batches_tracked.
NormState state_of(const Norm<float>& norm) {
  NormState state;
  for (const std::string& name : norm.state_names()) state[name] = norm.state(name);
  return state;
}

void restore(Norm<float>& norm, const NormState& state) {
  for (const auto& [name, value] : state) norm.set(name, value);
}

// The samples each batch statistic of `norm` is taken over in a batch of B:
// a norm with virtual_batch_size (Ghost BN) normalizes each run of that many
// samples with its own statistics; the others the whole batch.
std::size_t statistics_batch(const Norm<float>& norm, std::size_t batch) {
  const std::size_t v = norm.traits().virtual_batch_size;
  if (v == 0) return batch;
  if (batch % v != 0)
    throw std::invalid_argument("probe: batch size " + std::to_string(batch) +
                                " does not split into virtual batches of " + std::to_string(v));
  return v;
}

// One norm layer of a model: its place, and the full state every train
// forward of the probe starts from.
struct ProbedLayer {
  std::size_t index, ordinal;
  Norm<float>* norm;
  std::string input_from;
  bool has_running;
  NormState start;  // trained: the model's state as found; fresh: with the population statistics
};

class Prober {
 public:
  Prober(const ExperimentConfig& config, const Dataset& train,
         const std::function<void(const std::string&)>& note)
      : config_(config), train_(train), note_(note) {}

  std::vector<nlohmann::json> probe(Subject& subject) {
    std::vector<ProbedLayer> layers;
    for (std::size_t i = 0; i < subject.model.size(); ++i) {
      Norm<float>* norm = subject.model.layer(i).norm();
      if (!norm || !norm->traits().batch_statistics) continue;
      ProbedLayer layer{i,     layers.size() + 1,
                        norm,  i > 0 ? subject.model.layer(i - 1).name() : std::string("input"),
                        false, {}};
      const auto states = norm->state_names();
      layer.has_running = std::count(states.begin(), states.end(), "running_mean") &&
                          std::count(states.begin(), states.end(), "running_var");
      layers.push_back(layer);
    }
    std::vector<nlohmann::json> records;
    for (ProbedLayer& layer : layers) {
      const Moments population =
          population_moments(subject.model, layer.index, layer.norm->layout());
      // Every train forward starts from this state, so no batch size sees what
      // another left behind (Batch Renorm's warm-up advances with each one): the
      // model's own when trained; for a fresh model, whose running statistics are
      // just 0 and 1, its state with the population statistics in their place.
      layer.start = state_of(*layer.norm);
      if (layer.has_running && !subject.trained) {
        layer.start["running_mean"] = as_array(population.mean);
        layer.start["running_var"] = as_array(population.var);
      }
      for (std::size_t b : config_.batch_sizes)
        if (skip_reason(subject.traits, b).empty())  // as the run skips them
          records.push_back(probe_batch_size(subject, layer, population, b));
      // Later layers see this one normalized with its population statistics.
      restore(*layer.norm, layer.start);
      if (layer.has_running)
        set_running(layer, as_array(population.mean), as_array(population.var));
    }
    return records;
  }

 private:
  // Statistics of the activations entering layer `index` over the whole training set.
  Moments population_moments(Model<float>& model, std::size_t index, Layout layout) {
    const std::size_t n = train_.size(), chunk = config_.evaluation.batch_size;
    std::vector<std::size_t> order(n);
    for (std::size_t i = 0; i < n; ++i) order[i] = i;
    MomentAccumulator acc(layout);
    for (std::size_t first = 0; first < n; first += chunk) {
      const std::size_t count = std::min(chunk, n - first);
      xt::xarray<float> images = xt::empty<float>(with_batch(count, train_));
      std::vector<std::uint8_t> labels(count);
      gather(train_, order, first, images, labels);
      acc.add(model.forward_range(images, Mode::eval, 0, index));
    }
    return acc.moments();
  }

  static void set_running(ProbedLayer& layer, const xt::xarray<float>& mean,
                          const xt::xarray<float>& var) {
    layer.norm->set("running_mean", mean);
    layer.norm->set("running_var", var);
  }

  nlohmann::json probe_batch_size(Subject& subject, ProbedLayer& layer, const Moments& population,
                                  std::size_t batch) {
    const std::size_t n = train_.size();
    if (batch > n)
      throw std::invalid_argument("batch size " + std::to_string(batch) + " is larger than the " +
                                  std::to_string(n) + " training samples");
    const xt::xarray<float> pop_mean = as_array(population.mean),
                            pop_var = as_array(population.var);
    xt::xarray<float> images = xt::empty<float>(with_batch(batch, train_));
    std::vector<std::uint8_t> labels(batch);
    Spread mean_error, var_error, gap_population, gap_running;
    std::size_t values_per_channel = 0;
    // Ghost BN: each virtual batch is one sample of the batch statistics.
    const std::size_t stats_batch = statistics_batch(*layer.norm, batch);
    // Batches are consecutive slices of seeded shuffles of the training set, as in training.
    std::vector<std::size_t> order;
    std::size_t next = n, pass = 0;
    for (std::size_t k = 0; k < config_.probe.batches; ++k) {
      if (next + batch > n) {
        order = permutation(n, config_.probe.seed * 1000003ULL + batch * 1009ULL + pass++);
        next = 0;
      }
      gather(train_, order, next, images, labels);
      next += batch;
      const xt::xarray<float>& x = subject.model.forward_range(images, Mode::eval, 0, layer.index);
      const Layout layout = layer.norm->layout();
      values_per_channel = stats_batch * (x.size() / (x.shape(0) * channel_count(x, layout)));
      for (std::size_t first = 0; first < batch; first += stats_batch) {
        MomentAccumulator acc(layout);
        acc.add(x, first, stats_batch);
        const auto [e_mean, e_var] = relative_errors(acc.moments(), population);
        mean_error.add(e_mean);
        var_error.add(e_var);
      }
      if (!layer.has_running) continue;  // no eval statistics to compare with
      // Every train forward starts from the same full state (norms like batch
      // renormalization read it in train mode, and train forwards change it).
      restore(*layer.norm, layer.start);
      const xt::xarray<float> y_train = layer.norm->forward(x, Mode::train);
      if (subject.trained) {
        restore(*layer.norm, layer.start);
        gap_running.add(relative_l2(y_train, layer.norm->forward(x, Mode::eval)));
      }
      set_running(layer, pop_mean, pop_var);
      gap_population.add(relative_l2(y_train, layer.norm->forward(x, Mode::eval)));
    }
    std::size_t skipped = 0;
    for (double v : population.var) skipped += !usable(v);
    const double root_b = std::sqrt(double(batch)), root_n = std::sqrt(double(stats_batch));
    nlohmann::json record = {{"model", config_.model},
                             {"norm", subject.norm_label},
                             {"norm_spec", subject.norm},
                             {"layer", layer.ordinal},
                             {"layer_index", layer.index},
                             {"input_from", layer.input_from},
                             {"channels", population.mean.size()},
                             {"channels_skipped", skipped},
                             {"batch_size", batch},
                             {"stats_batch_size", stats_batch},
                             {"values_per_channel", values_per_channel},
                             {"batches", config_.probe.batches},
                             {"population_size", n},
                             {"inv_sqrt_b", 1.0 / root_b},
                             {"mean_error", mean_error.mean()},
                             {"mean_error_std", mean_error.std()},
                             {"mean_error_ratio", mean_error.mean().get<double>() * root_n},
                             {"var_error", var_error.mean()},
                             {"var_error_std", var_error.std()},
                             {"var_error_ratio", var_error.mean().get<double>() * root_n},
                             {"gap_population", gap_population.mean()},
                             {"gap_population_std", gap_population.std()},
                             {"gap_running", gap_running.mean()},
                             {"gap_running_std", gap_running.std()}};
    record.update(subject.source);
    char line[200];
    std::snprintf(line, sizeof line, "%s layer %zu B=%zu: mean error %.4f (x sqrt(%zu) = %.2f)",
                  subject.norm_label.c_str(), layer.ordinal, batch,
                  record["mean_error"].get<double>(), stats_batch,
                  record["mean_error_ratio"].get<double>());
    note_(line);
    return record;
  }

  const ExperimentConfig& config_;
  const Dataset& train_;
  const std::function<void(const std::string&)>& note_;
};

std::vector<nlohmann::json> read_records(const fs::path& path) {
  std::vector<nlohmann::json> records;
  for (JsonlRecord& record : read_jsonl(path, check_run_record, kDamagedRecordHint))
    records.push_back(std::move(record.value));
  return records;
}

// The model of cell `source.cell` of the run in `source.run_dir`: its saved
// weights (RUN/cells/<cell>/weights.json), or, for a run from before weights
// were kept, the cell re-trained (training is deterministic).
Subject trained_subject(const ExperimentConfig& config, const ProbeSource& source,
                        const std::function<void(const std::string&)>& note, Dataset& train) {
  const fs::path dir = source.run_dir;
  const ExperimentConfig run = load_config((dir / "config.json").string(), {});
  for (const char* key : {"model", "dataset"})
    if (run.resolved[key] != config.resolved[key])
      throw std::invalid_argument(std::string("the config's ") + key + " differs from the run's (" +
                                  (dir / "config.json").string() +
                                  "): probe the model on the data it was trained on");
  const std::vector<Cell> cells = grid_cells(run);
  const auto cell = std::find_if(cells.begin(), cells.end(),
                                 [&](const Cell& c) { return c.id() == source.cell; });
  if (cell == cells.end())
    throw std::invalid_argument("--cell '" + source.cell + "' is not a cell of " + dir.string() +
                                " (ids look like " + cells.front().id() + ")");
  if (!cell->norm_traits.batch_statistics)
    throw std::invalid_argument(
        "--cell '" + source.cell +
        "' has no batch-statistics norm (types: " + joined(batch_statistics_types()) + ")");
  nlohmann::json run_record;
  for (const nlohmann::json& r : read_records(dir / "results.jsonl"))
    if (r.value("cell", "") == source.cell) run_record = r;
  if (run_record.is_null())
    throw std::invalid_argument("--cell '" + source.cell + "' has not finished in " + dir.string());

  auto [full_train, test] = load_datasets(run.dataset);
  // The cell as it trained: without the validation split, at the learning rate
  // the search selected (its weights are kept under that search run's id).
  Cell trained = *cell;
  if (run_record.contains("lr_multiplier") && run_record["lr_multiplier"].is_number()) {
    trained.lr_multiplier = run_record["lr_multiplier"].get<double>();
    trained.search_run = !run.optimizer.lr_multipliers.empty();
  }
  Subject subject{cell->norm,
                  cell->norm_traits,
                  cell->norm_label(),
                  build_model<float>(run.model, cell->norm, run.activation_layout),
                  nullptr,
                  true};
  // The probe measures on the training set the cell trained on.
  Dataset train_set = split_validation(full_train, run.dataset).first;
  const bool saved = has_cell_weights(dir, trained.id());
  if (saved) {
    load_cell_weights(dir, run, trained, subject.model);
    note("loaded " + source.cell + " from " + cell_folder(dir, trained.id()).string());
  } else {
    note("re-training " + source.cell + " (" + run.budget.text() + "; the run kept no weights in " +
         cell_folder(dir, trained.id()).string() + ")");
    TrainingLog log;
    subject.model = train_model(run, trained, train_set, nullptr, log);
    if (log.diverged)
      throw std::runtime_error("--cell '" + source.cell + "' diverged when re-trained");
  }
  const double error = 1.0 - eval_accuracy(subject.model, test, run.evaluation.batch_size);
  const nlohmann::json run_error = run_record["test_error"];
  char line[160];
  std::snprintf(line, sizeof line, "%s test error %.4f%%; the run recorded %.4f%%",
                saved ? "saved model's" : "re-trained", 100 * error,
                run_error.is_number() ? 100 * run_error.get<double>() : NAN);
  note(line);
  // retrained_test_error: the probed model's test error, loaded or re-trained.
  subject.source = {{"source", "trained"},
                    {"seed", cell->seed},
                    {"trained_cell", source.cell},
                    {"trained_batch_size", cell->batch_size},
                    {"run", utf8_shown(dir.string())},
                    {"retrained_test_error", error},
                    {"run_test_error", run_error},
                    {"weights", saved ? "saved" : "retrained"}};
  train = std::move(train_set);
  return subject;
}

}  // namespace

std::vector<nlohmann::json> run_probe(const ExperimentConfig& config, const ProbeSource& source,
                                      const std::function<void(const std::string&)>& note) {
  use_threads_per_cell(config.threads_per_cell);  // as in training: a re-trained cell matches
  std::vector<Subject> subjects;
  Dataset train;
  if (!source.run_dir.empty()) {
    subjects.push_back(trained_subject(config, source, note, train));
  } else {
    for (const ConfigNorm& norm : config.norms) {
      if (!norm.traits.batch_statistics) continue;
      Cell cell;
      cell.norm = norm.spec;
      Subject subject{
          norm.spec,         norm.traits,
          cell.norm_label(), build_model<float>(config.model, norm.spec, config.activation_layout),
          nullptr,           false};
      subject.model.initialize(config.seeds.front());
      subject.source = {{"source", "fresh"},        {"seed", config.seeds.front()},
                        {"trained_cell", nullptr},  {"trained_batch_size", nullptr},
                        {"run", nullptr},           {"retrained_test_error", nullptr},
                        {"run_test_error", nullptr}};
      subjects.push_back(std::move(subject));
    }
    if (subjects.empty())
      throw std::invalid_argument("norms: no batch-statistics norm to probe (types: " +
                                  joined(batch_statistics_types()) + ")");
    train = load_datasets(config.dataset).first;
  }
  std::vector<nlohmann::json> records;
  Prober prober(config, train, note);
  for (Subject& subject : subjects)
    for (nlohmann::json& r : prober.probe(subject)) records.push_back(std::move(r));
  return records;
}

namespace {

const std::vector<std::string> kProbeColumns = {"source",
                                                "trained_cell",
                                                "seed",
                                                "model",
                                                "norm",
                                                "layer",
                                                "layer_index",
                                                "input_from",
                                                "channels",
                                                "channels_skipped",
                                                "batch_size",
                                                "stats_batch_size",
                                                "values_per_channel",
                                                "batches",
                                                "population_size",
                                                "inv_sqrt_b",
                                                "mean_error",
                                                "mean_error_std",
                                                "mean_error_ratio",
                                                "var_error",
                                                "var_error_std",
                                                "var_error_ratio",
                                                "gap_population",
                                                "gap_population_std",
                                                "gap_running",
                                                "gap_running_std"};

std::string number(const nlohmann::json& v, const char* format) {
  if (!v.is_number()) return "-";
  char text[32];
  std::snprintf(text, sizeof text, format, v.get<double>());
  return text;
}

}  // namespace

std::string probe_csv(const std::vector<nlohmann::json>& records) {
  std::string text;
  for (const auto& c : kProbeColumns) text += c + ",";
  text.back() = '\n';
  for (const auto& r : records) {
    for (const auto& c : kProbeColumns) text += csv_field(r.value(c, nlohmann::json())) + ",";
    text.back() = '\n';
  }
  return text;
}

std::string probe_table(const std::vector<nlohmann::json>& records) {
  std::string text =
      "| norm | layer | B | n | mean error | 1/sqrt(B) | ratio | var error | ratio | gap "
      "(population) | gap (running) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& r : records)
    text += "| " + r["norm"].get<std::string>() + " | " + std::to_string(r["layer"].get<int>()) +
            " (after " + r["input_from"].get<std::string>() + ") | " +
            std::to_string(r["batch_size"].get<int>()) + " | " +
            (r.contains("stats_batch_size") ? r["stats_batch_size"].dump() : "-") + " | " +
            number(r["mean_error"], "%.4f") + " | " + number(r["inv_sqrt_b"], "%.4f") + " | " +
            number(r["mean_error_ratio"], "%.2f") + " | " + number(r["var_error"], "%.4f") + " | " +
            number(r["var_error_ratio"], "%.2f") + " | " + number(r["gap_population"], "%.4f") +
            " | " + number(r["gap_running"], "%.4f") + " |\n";
  return text;
}

}  // namespace normlab
