// normlab bench: how fast each norm's forward and backward run, next to the
// machine's memory bandwidth measured in the same run. Norms are memory-bound,
// so the figure of merit is the effective GB/s of the minimum memory traffic.
#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>

#include <time.h>    // clock_gettime
#include <unistd.h>  // sysconf

#include "../engine/engine_isa.hpp"  // last_level_cache_bytes
#include "../shapes.hpp"
#include "alloc_counter.hpp"
#include "bench_model.hpp"
#include "commands.hpp"
#include "normlab/normlab.hpp"
#include "parse_options.hpp"
#include "stream_probe.hpp"

namespace po = boost::program_options;

namespace normlab::cli {
namespace {

struct BenchOptions {
  std::vector<std::string> norms;
  std::vector<std::string> shapes;
  unsigned threads = 1;
  int repeats = 10;
  double seconds = 0;  // 0: no budget, every measurement does `repeats`
  bool json = false;
  std::string dtype = "float32";
  std::size_t probe_mb = 0;  // 0: sized from the last-level cache (probe_bytes)
  std::size_t value_bytes() const { return dtype == "float64" ? 8 : dtype == "bfloat16" ? 2 : 4; }
};

struct Case {
  nlohmann::json spec;
  std::vector<std::size_t> shape;
};

using Shape = std::vector<std::size_t>;

// The input's size over the last-level cache's. Up to 0.5 the input and output
// fit in the cache together (cache_resident): repeated calls run from the
// cache, above the memory's bandwidth; from 4 on, every phase streams from memory.
double input_to_cache(const Shape& shape, std::size_t value_bytes) {
  return double(product(shape, 0, shape.size()) * value_bytes) / double(last_level_cache_bytes());
}
bool cache_resident(const Shape& shape, std::size_t value_bytes) {
  return input_to_cache(shape, value_bytes) <= 0.5;
}

// `shape` with its first dimension grown so that the input is at least four
// times the last-level cache: every phase then streams from memory.
Shape beyond_cache(Shape shape, std::size_t value_bytes) {
  const std::size_t per_first = product(shape, 1, shape.size()) * value_bytes;
  const std::size_t target = 4 * last_level_cache_bytes();
  shape[0] = std::max(shape[0], (target + per_first - 1) / per_first);
  return shape;
}

// The default cases, from the registry: every activation norm on a large
// 4-D activation, on the same activation with its batch grown beyond the
// cache, and on a batch of two (unless its virtual batches need more samples);
// per-sample norms that take (N, C) also on the rows of a transformer-sized
// LayerNorm and on 1024-wide rows beyond the cache; weight reparameterizations
// on a conv weight.
std::vector<Case> default_cases(std::size_t value_bytes) {
  const Shape large{32, 64, 56, 56}, rows{8192, 768}, small_batch{2, 64, 56, 56};
  const Shape large_beyond = beyond_cache(large, value_bytes),
              rows_beyond = beyond_cache({1, 1024}, value_bytes);
  const Shape conv_weight{256, 128, 3, 3};
  std::vector<Case> cases;
  for (const NormInfo& info : registered_norms()) {
    const nlohmann::json spec = {{"type", info.type}};
    const NormTraits& t = info.traits;
    if (t.identity) continue;  // nothing to time ("none"; --shape times it)
    if (t.reparameterizes_weight) {
      cases.push_back({spec, conv_weight});
      continue;
    }
    cases.push_back({spec, large});
    cases.push_back({spec, large_beyond});
    if (!t.batch_statistics && !t.needs_spatial) {
      cases.push_back({spec, rows});
      cases.push_back({spec, rows_beyond});
    }
    if (t.virtual_batch_size <= small_batch[0]) cases.push_back({spec, small_batch});
  }
  return cases;
}

// At most `max` characters of `text`, for quoting user input in messages.
std::string clip(const std::string& text, std::size_t max = 60) {
  return text.size() > max ? text.substr(0, max) + "..." : text;
}

constexpr long long kMaxThreads = 1024;

// Sizes separated by commas; the bench holds four arrays of the shape (x, y,
// dy, dx), which must fit in this machine's memory.
Shape parse_shape(const std::string& text, std::size_t value_bytes) {
  Shape shape;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    std::size_t used = 0;
    unsigned long long size = 0;
    try {
      size = std::stoull(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != part.size() || size == 0 || part[0] == '-')
      throw UsageError("--shape '" + text +
                       "': expected positive sizes separated by commas, e.g. 32,64,56,56");
    shape.push_back(std::size_t(size));
  }
  if (shape.empty()) throw UsageError("--shape is empty: give sizes such as 8192,768");
  std::size_t bytes = 4 * value_bytes;
  for (std::size_t d : shape)
    if (__builtin_mul_overflow(bytes, d, &bytes)) bytes = std::size_t(-1);
  const std::size_t memory = physical_memory_bytes();
  if (bytes == std::size_t(-1) || (memory > 0 && bytes > memory))
    throw UsageError("--shape '" + clip(text) +
                     "': four arrays of this shape do not fit in "
                     "this machine's " +
                     std::to_string(memory / (1024 * 1024)) + " MiB of memory");
  return shape;
}

// --norm and --shape select from the defaults: norms alone keep their default
// shapes, shapes alone get the activation norms, both give every pair.
std::vector<Case> select_cases(const BenchOptions& o) {
  std::vector<nlohmann::json> specs;
  for (const std::string& n : o.norms) specs.push_back(norm_option("--norm", n));
  std::vector<Shape> shapes;
  for (const std::string& s : o.shapes) shapes.push_back(parse_shape(s, o.value_bytes()));
  if (shapes.empty()) {
    const std::vector<Case> defaults = default_cases(o.value_bytes());
    if (specs.empty()) return defaults;
    std::vector<Case> cases;
    for (const nlohmann::json& spec : specs)
      for (const Case& c : defaults)
        if (c.spec["type"] == spec["type"]) cases.push_back({spec, c.shape});
    if (cases.empty())
      throw UsageError("no default shape for --norm " + o.norms.front() +
                       ": give one with --shape");
    return cases;
  }
  if (specs.empty())
    for (const NormInfo& info : registered_norms())
      if (!info.traits.reparameterizes_weight && !info.traits.identity)
        specs.push_back({{"type", info.type}});
  std::vector<Case> cases;
  for (const nlohmann::json& spec : specs)
    for (const Shape& shape : shapes) cases.push_back({spec, shape});
  return cases;
}

// Minimum memory traffic in whole-tensor passes (docs/performance.md). A
// group that fits in cache is read once for its statistics and normalize;
// batch-statistics groups span the batch, so their statistics cost one more
// read of x, and their backward reductions one more read of x and dy. Parameters and
// statistics are negligible.
struct Passes {
  int forward, forward_eval, backward;
};

Passes minimum_passes(const nlohmann::json& resolved_spec) {
  const NormTraits traits = norm_traits(resolved_spec);
  if (traits.batch_statistics) return {3, traits.running_state ? 2 : 3, 5};
  return {2, 2, 3};
}

// One measured phase: median wall time of the timed calls after a warm-up call.
struct Timing {
  double median_ms = 0;
  double cpu_median_ms = 0;  // CPU time of this process per engine thread
  int calls = 0;
  double allocations_per_call = 0;
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// CPU seconds used by this process: next to wall time, it shows how much of the
// time the engine waited for a CPU on a busy machine.
double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

double median(std::vector<double>& values) {
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

// Shares the --seconds budget among the measurements still to do.
class Budget {
 public:
  Budget(double seconds, int measurements)
      : seconds_(seconds), remaining_(measurements), start_(Clock::now()) {}
  // Seconds the next measurement may take (0: unlimited).
  double next_share() {
    if (seconds_ <= 0) return 0;
    const double share = std::max(0.0, seconds_ - seconds_since(start_)) / std::max(1, remaining_);
    --remaining_;
    return share;
  }
  // Gives up the shares of measurements that will not run.
  void skip(int measurements) { remaining_ -= measurements; }

 private:
  double seconds_;
  int remaining_;
  Clock::time_point start_;
};

// Up to `repeats` timed calls, fewer when the share is spent (at least one).
template <class F>
Timing measure(F&& call, int repeats, double share_seconds) {
  const Clock::time_point start = Clock::now();
  call();  // warm-up: first-touch of outputs and saved state, caches, branch predictors
  std::vector<double> ms, cpu_ms;
  // Reserved before counting, so that only the calls' own allocations count.
  ms.reserve(std::size_t(repeats));
  cpu_ms.reserve(std::size_t(repeats));
  const std::size_t allocations_before = allocation_count();
  while (int(ms.size()) < repeats) {
    const double cpu = process_cpu_seconds();
    const Clock::time_point t = Clock::now();
    call();
    const double seconds = seconds_since(t);
    cpu_ms.push_back((process_cpu_seconds() - cpu) * 1e3 / num_threads());
    ms.push_back(seconds * 1e3);
    if (share_seconds > 0 && seconds_since(start) + seconds > share_seconds) break;
  }
  Timing timing;
  timing.calls = int(ms.size());
  timing.allocations_per_call = double(allocation_count() - allocations_before) / ms.size();
  timing.median_ms = median(ms);
  timing.cpu_median_ms = median(cpu_ms);
  return timing;
}

// Deterministic, cheap, non-degenerate data in [-1, 1) + offset (xorshift).
template <class T>
void fill(xt::xarray<T>& a, std::uint64_t seed, double offset) {
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (T& v : a) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    v = nearest<T>(double(s >> 11) * (2.0 / 9007199254740992.0) - 1.0 + offset);
  }
}

std::string shape_string(const Shape& shape) {
  std::string text;
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? "x" : "") + std::to_string(shape[i]);
  return text;
}

std::string format(const char* pattern, double a, double b, double c) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, pattern, a, b, c);
  return buffer;
}

struct PhaseResult {
  const char* name;
  Timing timing;
  double bytes;
  double gbs() const { return bytes / (timing.median_ms * 1e-3) / 1e9; }
};

// Share of the wall time the engine had a CPU: well below 1 on a busy machine.
double cpu_share(const std::vector<PhaseResult>& phases) {
  double wall = 0, cpu = 0;
  for (const PhaseResult& p : phases) wall += p.timing.median_ms, cpu += p.timing.cpu_median_ms;
  return wall > 0 ? std::min(1.0, cpu / wall) : 1.0;
}

// The spec text of a case when it is more than its type.
std::string norm_label(const nlohmann::json& spec) {
  return spec.size() == 1 ? spec.at("type").get<std::string>() : spec.dump();
}

void print_table_header() {
  std::printf("%-10s %-15s %6s %8s %6s %4s  %8s %6s %4s  %8s %6s %4s  %4s %s\n", "norm", "shape",
              "x/LLC", "fwd ms", "GB/s", "%bw", "eval ms", "GB/s", "%bw", "bwd ms", "GB/s", "%bw",
              "cpu", "allocs f/e/b");
}

// x/LLC: the input's size over the last-level cache's (input_to_cache).
void print_row(const nlohmann::json& spec, const Shape& shape, std::size_t value_bytes,
               const std::vector<PhaseResult>& phases, double bandwidth) {
  std::printf("%-10s %-15s %6.2f", norm_label(spec).c_str(), shape_string(shape).c_str(),
              input_to_cache(shape, value_bytes));
  for (const PhaseResult& p : phases)
    std::printf(" %s ", format("%8.3f %6.1f %3.0f%%", p.timing.median_ms, p.gbs(),
                               100 * p.gbs() / bandwidth)
                            .c_str());
  std::printf("%3.0f%% %g/%g/%g\n", 100 * cpu_share(phases), phases[0].timing.allocations_per_call,
              phases[1].timing.allocations_per_call, phases[2].timing.allocations_per_call);
  std::fflush(stdout);
}

void print_json_row(const nlohmann::json& spec, const Shape& shape, const BenchOptions& o,
                    const std::vector<PhaseResult>& phases, const Bandwidth& bandwidth) {
  nlohmann::json row = {{"norm", spec.at("type")},
                        {"spec", spec},
                        {"shape", shape},
                        {"dtype", o.dtype},
                        {"input_to_cache", input_to_cache(shape, o.value_bytes())},
                        {"cache_resident", cache_resident(shape, o.value_bytes())},
                        {"last_level_cache_bytes", last_level_cache_bytes()},
                        {"threads", o.threads},
                        {"engine_threads", num_threads()},
                        {"engine_isa", engine_isa()},
                        {"cpu_share", cpu_share(phases)},
                        {"bandwidth_gbs", bandwidth.best_gbs()},
                        {"copy_gbs", bandwidth.copy_gbs},
                        {"triad_gbs", bandwidth.triad_gbs}};
  for (const PhaseResult& p : phases) {
    const std::string name = p.name;
    row[name + "_ms"] = p.timing.median_ms;
    row[name + "_cpu_ms"] = p.timing.cpu_median_ms;
    row[name + "_calls"] = p.timing.calls;
    row[name + "_bytes"] = p.bytes;
    row[name + "_gbs"] = p.gbs();
    row[name + "_pct"] = 100 * p.gbs() / bandwidth.best_gbs();
    row[name + "_allocs_per_call"] = p.timing.allocations_per_call;
  }
  std::cout << row.dump() << std::endl;
}

// Measures one case; nullopt (and why) when the norm does not accept the shape.
template <class T>
std::optional<std::vector<PhaseResult>> bench_case(const Case& c, const BenchOptions& o,
                                                   Budget& budget, nlohmann::json& resolved) {
  std::unique_ptr<Norm<T>> norm;
  xt::xarray<T> x = xt::xarray<T>::from_shape(c.shape), dy = xt::xarray<T>::from_shape(c.shape);
  fill(x, 1, 0.5);
  fill(dy, 2, 0.0);
  xt::xarray<T> y = xt::empty<T>(c.shape), dx = xt::empty<T>(c.shape);
  try {  // the norm refuses the build (no MPI), the shape in prepare, or in a forward
    norm = make_norm<T>(c.spec, 0);
    norm->prepare(c.shape);
    norm->forward(x, Mode::train, y);
  } catch (const std::invalid_argument& e) {
    std::cerr << "normlab bench: skipped " << norm_label(c.spec) << " on " << shape_string(c.shape)
              << ": " << e.what() << "\n";
    budget.skip(3);
    return std::nullopt;
  }
  resolved = norm->to_json();

  const Passes passes = minimum_passes(resolved);
  const double tensor_bytes = double(x.size() * sizeof(T));
  std::vector<PhaseResult> phases;
  phases.push_back(
      {"forward",
       measure([&] { norm->forward(x, Mode::train, y); }, o.repeats, budget.next_share()),
       passes.forward * tensor_bytes});
  phases.push_back(
      {"forward_eval",
       measure([&] { norm->forward(x, Mode::eval, y); }, o.repeats, budget.next_share()),
       passes.forward_eval * tensor_bytes});
  norm->forward(x, Mode::train, y);  // backward of a train forward, not of the eval one
  phases.push_back({"backward",
                    measure([&] { norm->backward(dy, dx); }, o.repeats, budget.next_share()),
                    passes.backward * tensor_bytes});
  return phases;
}

void print_header(std::ostream& out, const BenchOptions& o, const Bandwidth& b) {
  const BlasInfo blas = blas_info();
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M", std::localtime(&now));
  out << "normlab bench " << version << ", " << date << ", "
      << environment_info(1).at("cpu").get<std::string>() << ", "
      << std::thread::hardware_concurrency() << " logical CPUs, L2 "
      << sysconf(_SC_LEVEL2_CACHE_SIZE) / 1024 << " KiB, L3 "
      << sysconf(_SC_LEVEL3_CACHE_SIZE) / (1024 * 1024) << " MiB (as reported), g++ " << __VERSION__
      << "\n"
      << o.dtype << ", --threads " << o.threads << " (engine threads " << num_threads()
      << ", kernels " << engine_isa() << "), median of up to " << o.repeats
      << " calls after a warm-up"
      << (o.seconds > 0 ? ", budget " + format("%g s", o.seconds, 0, 0) : std::string()) << "\n"
      << "BLAS: " << blas.library << " " << blas.version << ", core " << blas.core << " ("
      << blas.selection << ")\n"
      << format("bandwidth: copy %.1f GB/s, triad %.1f GB/s -> %.1f GB/s is 100%%", b.copy_gbs,
                b.triad_gbs, b.best_gbs())
      << " (3 arrays of " << b.array_bytes / (1024 * 1024) << " MiB, " << b.threads
      << (b.threads == 1 ? " thread" : " threads") << ", best of " << b.passes << ")\n"
      << "minimum traffic: forward x + y, backward x + dy + dx; batch: forward 2x + y (eval x + y),"
         " backward 2x + 2dy + dx\n";
}

// The options of `bench --model`, checked.
ModelBenchOptions model_options(const BenchOptions& o, const std::string& model,
                                const std::string& batch, const std::string& steps,
                                const std::string& threads, const std::string& layout) {
  ModelBenchOptions m;
  try {
    model_is_convolutional(model);
  } catch (const std::invalid_argument& e) {
    throw UsageError("--model: " + std::string(e.what()));
  }
  m.model = model;
  if (o.norms.size() > 1) throw UsageError("--model takes one --norm");
  if (!o.shapes.empty()) throw UsageError("--shape does not go with --model");
  const std::string norm = o.norms.empty() ? "batch" : o.norms[0];
  m.norm = norm_option("--norm", norm);
  m.batch = std::size_t(integer_option("--batch", batch, 1, 100'000));
  m.steps = std::size_t(integer_option("--steps", steps, 1, 100'000));
  m.threads = unsigned(integer_option("--threads", threads, 1, kMaxThreads));
  if (layout != "nchw" && layout != "nhwc")
    throw UsageError("--layout '" + clip(layout) +
                     "': use nchw (channels first, the default) or nhwc (channels "
                     "last, cnn3 and the ResNets only)");
  m.layout = parse_layout(layout);
  m.json = o.json;
  if (o.dtype != "float32") throw UsageError("--model trains in float32 only");
  return m;
}

// The cases whose norm accepts their shape (make_norm and prepare, which
// allocate no tensor), so that a bad shape is refused before the bandwidth
// probe and the bench's arrays are allocated.
std::vector<Case> accepted_cases(const std::vector<Case>& cases) {
  std::vector<Case> accepted;
  for (const Case& c : cases) {
    try {
      make_norm<float>(c.spec, 0)->prepare(c.shape);
      accepted.push_back(c);
    } catch (const std::invalid_argument& e) {  // no MPI in this build, or the shape
      std::cerr << "normlab bench: skipped " << norm_label(c.spec) << " on "
                << shape_string(c.shape) << ": " << e.what() << "\n";
    }
  }
  if (accepted.empty()) throw UsageError("no norm accepted any of the shapes");
  return accepted;
}

// Bytes per array of the bandwidth probe: --probe-mb, else four times the
// last-level cache (STREAM's rule, so that the arrays stream from memory), at
// least 32 MiB, at most 512 MiB and an eighth of the memory.
std::size_t probe_bytes(const BenchOptions& o) {
  constexpr std::size_t kMiB = 1024 * 1024;
  if (o.probe_mb > 0) return o.probe_mb * kMiB;
  // A server's L3 can be hundreds of MiB: 512 MiB (the old fixed size) is the most.
  std::size_t bytes = std::clamp<std::size_t>(4 * last_level_cache_bytes(), 32 * kMiB, 512 * kMiB);
  if (const std::size_t memory = physical_memory_bytes(); memory > 0)
    bytes = std::min(bytes, memory / 8);
  return std::max(kMiB, (bytes + kMiB - 1) / kMiB * kMiB);
}

template <class T>
int run_bench(const BenchOptions& o, const std::vector<Case>& cases) {
  Budget budget(o.seconds, 3 * int(cases.size()));
  // With a budget, the probe gets its minimum: one untimed and two timed passes.
  const Bandwidth bandwidth = measure_bandwidth(o.threads, probe_bytes(o), o.seconds > 0 ? 2 : 5);
  print_header(o.json ? std::cerr : std::cout, o, bandwidth);
  if (!o.json) print_table_header();
  int rows = 0;
  double lowest_cpu_share = 1;
  for (const Case& c : cases) {
    nlohmann::json resolved;
    const auto phases = bench_case<T>(c, o, budget, resolved);
    if (!phases) continue;
    ++rows;
    lowest_cpu_share = std::min(lowest_cpu_share, cpu_share(*phases));
    if (o.json)
      print_json_row(resolved, c.shape, o, *phases, bandwidth);
    else
      print_row(c.spec, c.shape, o.value_bytes(), *phases, bandwidth.best_gbs());
  }
  if (rows == 0) throw std::invalid_argument("no norm accepted any of the shapes");
  if (lowest_cpu_share < 0.9)
    std::cerr << "normlab bench: warning: the machine is busy: some cases had a CPU for only "
              << int(100 * lowest_cpu_share) << "% of their wall time (column cpu); their times "
              << "and GB/s are pessimistic\n";
  return 0;
}

}  // namespace

int bench_command(const Args& args) {
  BenchOptions o;
  po::options_description desc(
      "usage: normlab bench [--norm NAME|SPEC ...] [--shape N,C,H,W ...] [--threads N]\n"
      "                     [--repeats K] [--seconds S] [--json]\n"
      "                     [--dtype float32|float64|bfloat16] [--probe-mb MIB]\n"
      "       normlab bench --model cnn3|mlp2|resnet8|resnet20|resnetD_wW [--norm NAME|SPEC] "
      "[--batch B] [--steps K]\n"
      "                     [--threads N] [--layout nchw|nhwc] [--json]\n\n"
      "Times forward (train), forward (eval) and backward of each norm and shape (median\n"
      "after a warm-up) and reports the effective GB/s of the minimum memory traffic\n"
      "against the machine's bandwidth, measured first (STREAM copy and triad).\n"
      "With --model: the time of one training step of that model, layer by layer. Options");
  // Numbers are read as text and range-checked (an unsigned option would take
  // "-1" as 2^32 - 1).
  std::string threads = "1", repeats = "10", seconds = "0", probe_mb;
  std::string model, batch = "64", steps = "20", layout = "nchw";
  desc.add_options()("help,h", "show this help")(
      "norm", po::value(&o.norms)->multitoken()->composing()->value_name("NAME|SPEC"),
      "norms to time: a name from `normlab list norms`, or a JSON spec (default: all)")(
      "shape", po::value(&o.shapes)->multitoken()->composing()->value_name("N,C,..."),
      "input shapes, e.g. 32,64,56,56 8192,768 (default: each norm's default shapes)")(
      "threads", po::value(&threads)->value_name("N"),
      "threads of the engine and of the bandwidth probe, 1 to 1024 (default 1)")(
      "repeats", po::value(&repeats)->value_name("K"),
      "timed calls per measurement, 1 to 1000000 (default 10)")(
      "seconds", po::value(&seconds)->value_name("S"),
      "time budget for the whole run, shared by the measurements, up to 86400 (default: none)")(
      "json", po::bool_switch(&o.json), "one JSON line per case on stdout instead of the table")(
      "dtype", po::value(&o.dtype)->value_name("DTYPE"),
      "float32 (default), float64, or bfloat16 (data, parameters and state bfloat16, float "
      "arithmetic inside; the traffic counts 2 bytes a value)")(
      "probe-mb", po::value(&probe_mb)->value_name("MIB"),
      "MiB per array of the bandwidth probe, 1 to 65536 (default: 4 times the last-level "
      "cache, 32 to 512)")("model", po::value(&model)->value_name("MODEL"),
                           "time a training step of this model layer by layer: cnn3, mlp2, "
                           "resnet8, resnet20, resnetD_wW")(
      "batch", po::value(&batch)->value_name("B"),
      "with --model: images per step, 1 to 100000 (default 64)")(
      "steps", po::value(&steps)->value_name("K"),
      "with --model: timed steps, 1 to 100000 (default 20)")(
      "layout", po::value(&layout)->value_name("LAYOUT"),
      "with --model: the activations' order, nchw (default) or nhwc (channels last, cnn3 and the "
      "ResNets)");
  if (!parse_options(args, desc)) return 0;
  if (!model.empty()) return bench_model(model_options(o, model, batch, steps, threads, layout));
  for (const char* only_with_model : {"batch", "steps", "layout"})
    if (std::any_of(args.begin(), args.end(), [&](const std::string& arg) {
          return arg.rfind(std::string("--") + only_with_model, 0) == 0;
        }))
      throw UsageError(std::string("--") + only_with_model + " goes with --model");
  o.threads = unsigned(integer_option("--threads", threads, 1, kMaxThreads));
  o.repeats = int(integer_option("--repeats", repeats, 1, 1'000'000));
  o.seconds = number_option("--seconds", seconds, 0, 86400);
  if (!probe_mb.empty()) o.probe_mb = std::size_t(integer_option("--probe-mb", probe_mb, 1, 65536));
  // Three arrays of probe_mb MiB must fit in this machine's memory.
  const std::size_t memory = physical_memory_bytes();
  if (memory > 0 && 3 * o.probe_mb * 1024 * 1024 > memory)
    throw UsageError("--probe-mb " + probe_mb + ": 3 arrays of " + probe_mb +
                     " MiB do not fit in this machine's " + std::to_string(memory / (1024 * 1024)) +
                     " MiB of memory");
  if (o.dtype != "float32" && o.dtype != "float64" && o.dtype != "bfloat16")
    throw UsageError("--dtype '" + o.dtype + "': use float32, float64 or bfloat16");
  set_num_threads(o.threads);
  const std::vector<Case> cases = accepted_cases(select_cases(o));
  if (o.dtype == "bfloat16") return run_bench<bfloat16>(o, cases);
  return o.dtype == "float32" ? run_bench<float>(o, cases) : run_bench<double>(o, cases);
}

}  // namespace normlab::cli
