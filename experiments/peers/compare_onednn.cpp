// normlab's BatchNorm and LayerNorm next to oneDNN's (Debian libdnnl-dev 2.6),
// the speed peer for CPU normalization, in one process, interleaved:
//
//   compare_onednn [--threads 1,2] [--rounds 3] [--repeats 10] [--dtype float32|bfloat16]
//                  [--json]
//
// For each case, layout and thread count it times forward train, forward
// eval (running statistics: oneDNN's use_global_stats) and backward (dx,
// dgamma, dbeta) of normlab and of oneDNN in each layout oneDNN offers for the
// same logical tensor: nchw, nhwc and its blocked nChw16c for BatchNorm; the
// row-major (N, C) matrix for LayerNorm. Rounds alternate normlab and oneDNN;
// each phase's time is its median over `repeats` calls after a warm-up, the
// best of the rounds. The ratio is oneDNN / normlab (above 1: normlab is
// faster), against the fastest oneDNN layout. --dtype bfloat16 times
// normlab's Norm<bfloat16> against oneDNN's bf16 primitives (data bf16; scale,
// shift, their gradients and the statistics f32, as oneDNN requires). Built
// only when CMake finds oneDNN; scripts/compare_onednn runs it.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <oneapi/dnnl/dnnl.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xrandom.hpp>

#include "normlab/normlab.hpp"

namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using Clock = std::chrono::steady_clock;

// Median ms of `repeats` calls after one warm-up; `before` runs untimed ahead of each.
double median_ms(const std::function<void()>& call, int repeats,
                 const std::function<void()>& before = nullptr) {
  if (before) before();
  call();
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    if (before) before();
    const auto start = Clock::now();
    call();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return ms[ms.size() / 2];
}

struct Phases {
  double forward = 1e300, eval = 1e300, backward = 1e300;
  void keep_best(const Phases& p) {
    forward = std::min(forward, p.forward);
    eval = std::min(eval, p.eval);
    backward = std::min(backward, p.backward);
  }
};

struct Case {
  std::string norm;                // "batch" or "layer"
  std::vector<std::size_t> shape;  // logical: (N, C, H, W) or (N, C)
};

memory::dims dims_of(const std::vector<std::size_t>& shape) {
  return memory::dims(shape.begin(), shape.end());
}

// x, y, dy, dx, and the per-channel scale and shift with their gradients.
struct Buffers {
  memory src, dst, diff_dst, diff_src, scale, shift, diff_scale, diff_shift;
};

// Forward train, forward eval and backward of one oneDNN normalization (the
// argument lists are the same for BatchNorm and LayerNorm).
template <class Forward, class Backward>
Phases time_phases(const dnnl::engine& eng, dnnl::stream& s,
                   const typename Forward::primitive_desc& train_pd,
                   const typename Forward::primitive_desc& eval_pd,
                   const typename Backward::primitive_desc& back_pd, const Buffers& b,
                   int repeats) {
  memory mean(train_pd.mean_desc(), eng), var(train_pd.variance_desc(), eng),
      workspace(train_pd.workspace_desc(), eng);
  Forward train(train_pd), eval(eval_pd);
  Backward back(back_pd);
  std::unordered_map<int, memory> fwd = {{DNNL_ARG_SRC, b.src},          {DNNL_ARG_DST, b.dst},
                                         {DNNL_ARG_MEAN, mean},          {DNNL_ARG_VARIANCE, var},
                                         {DNNL_ARG_SCALE, b.scale},      {DNNL_ARG_SHIFT, b.shift},
                                         {DNNL_ARG_WORKSPACE, workspace}};
  std::unordered_map<int, memory> bwd = {
      {DNNL_ARG_SRC, b.src},
      {DNNL_ARG_MEAN, mean},
      {DNNL_ARG_VARIANCE, var},
      {DNNL_ARG_DIFF_DST, b.diff_dst},
      {DNNL_ARG_SCALE, b.scale},
      {DNNL_ARG_DIFF_SRC, b.diff_src},
      {DNNL_ARG_SHIFT, b.shift},  // oneDNN 2.6's backward asks for it too
      {DNNL_ARG_DIFF_SCALE, b.diff_scale},
      {DNNL_ARG_DIFF_SHIFT, b.diff_shift},
      {DNNL_ARG_WORKSPACE, workspace}};
  Phases p;
  p.forward = median_ms([&] { train.execute(s, fwd), s.wait(); }, repeats);
  p.eval = median_ms([&] { eval.execute(s, fwd), s.wait(); }, repeats);
  p.backward = median_ms([&] { back.execute(s, bwd), s.wait(); }, repeats);
  return p;
}

// oneDNN's phases for one case in one memory layout, data of type `type`.
Phases time_onednn(const Case& c, Tag tag, memory::data_type type, int repeats) {
  using namespace dnnl;
  const engine eng(engine::kind::cpu, 0);
  stream s(eng);
  const memory::desc data(dims_of(c.shape), type, tag);
  const float eps = 1e-5f;
  const auto flags = normalization_flags::use_scale | normalization_flags::use_shift;
  // Values in the layout's memory (their order does not matter for the time).
  auto filled = [&](const memory::desc& md, float offset) {
    memory m(md, eng);
    const bool half = md.data_type() == memory::data_type::bf16;
    const std::size_t n = md.get_size() / (half ? 2 : 4);
    for (std::size_t i = 0; i < n; ++i) {
      const float v = offset + float((i * 2654435761u) % 1000) / 500.0f;
      if (half)
        static_cast<normlab::bfloat16*>(m.get_data_handle())[i] = normlab::bfloat16(v);
      else
        static_cast<float*>(m.get_data_handle())[i] = v;
    }
    return m;
  };
  const std::size_t channels = c.norm == "batch" ? c.shape[1] : c.shape.back();
  const memory::desc per_channel({memory::dim(channels)}, memory::data_type::f32, Tag::a);
  const Buffers b{filled(data, -1.0f),      memory(data, eng),         filled(data, -1.0f),
                  memory(data, eng),        filled(per_channel, 0.5f), filled(per_channel, 0.0f),
                  memory(per_channel, eng), memory(per_channel, eng)};
  if (c.norm == "batch") {
    using Forward = batch_normalization_forward;
    using Backward = batch_normalization_backward;
    const Forward::primitive_desc train_pd({prop_kind::forward_training, data, eps, flags}, eng);
    // Eval with running statistics: oneDNN's use_global_stats.
    const Forward::primitive_desc eval_pd(
        {prop_kind::forward_inference, data, eps, flags | normalization_flags::use_global_stats},
        eng);
    const Backward::primitive_desc back_pd({prop_kind::backward, data, data, eps, flags}, eng,
                                           train_pd);
    return time_phases<Forward, Backward>(eng, s, train_pd, eval_pd, back_pd, b, repeats);
  }
  using Forward = layer_normalization_forward;
  using Backward = layer_normalization_backward;
  const Forward::primitive_desc train_pd({prop_kind::forward_training, data, eps, flags}, eng);
  const Forward::primitive_desc eval_pd({prop_kind::forward_inference, data, eps, flags}, eng);
  const Backward::primitive_desc back_pd({prop_kind::backward, data, data, eps, flags}, eng,
                                         train_pd);
  return time_phases<Forward, Backward>(eng, s, train_pd, eval_pd, back_pd, b, repeats);
}

// normlab's phases for one case in one layout (nhwc: channels last), data of type T.
template <class T>
Phases time_normlab(const Case& c, normlab::Layout layout, int repeats) {
  nlohmann::json spec = {{"type", c.norm}};
  std::vector<std::size_t> shape = c.shape;
  if (c.norm == "batch" && layout == normlab::Layout::nhwc) {
    spec["layout"] = "nhwc";
    shape = {c.shape[0], c.shape[2], c.shape[3], c.shape[1]};
  }
  if (c.norm == "layer") spec["normalized_shape"] = {c.shape.back()};
  auto norm = normlab::make_norm<T>(spec, 0);
  auto values = [&](float offset) {
    const xt::xarray<float> drawn = xt::random::randn<float>(shape) + offset;
    xt::xarray<T> out = xt::xarray<T>::from_shape(shape);
    for (std::size_t i = 0; i < out.size(); ++i) out.flat(i) = T(drawn.flat(i));
    return out;
  };
  const xt::xarray<T> x = values(0.5f), dy = values(0.0f);
  xt::xarray<T> y = xt::xarray<T>::from_shape(shape), dx = xt::xarray<T>::from_shape(shape);
  Phases p;
  p.forward = median_ms([&] { norm->forward(x, normlab::Mode::train, y); }, repeats);
  p.eval = median_ms([&] { norm->forward(x, normlab::Mode::eval, y); }, repeats);
  p.backward = median_ms([&] { norm->backward(dy, dx); }, repeats,
                         [&] { norm->forward(x, normlab::Mode::train, y); });
  return p;
}

std::vector<int> parse_counts(const std::string& text, const char* what) {
  std::vector<int> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end || v < 1 || v > 1024)
      throw std::invalid_argument(std::string(what) + ": '" + item +
                                  "' is not a count from 1 to 1024");
    out.push_back(int(v));
  }
  if (out.empty()) throw std::invalid_argument(std::string(what) + ": empty");
  return out;
}

std::string layout_name(Tag tag) {
  switch (tag) {
    case Tag::nchw:
      return "nchw";
    case Tag::nhwc:
      return "nhwc";
    case Tag::nChw16c:
      return "nChw16c";
    default:
      return "ab";
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<int> threads = {1, 2};
    int rounds = 3, repeats = 10;
    bool json = false;
    std::string dtype = "float32";
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--json") {
        json = true;
      } else if (arg == "--dtype" && i + 1 < argc) {
        dtype = argv[++i];
        if (dtype != "float32" && dtype != "bfloat16")
          throw std::invalid_argument("--dtype '" + dtype + "': use float32 or bfloat16");
      } else if ((arg == "--threads" || arg == "--rounds" || arg == "--repeats") && i + 1 < argc) {
        const std::string value = argv[++i];
        if (arg == "--threads") threads = parse_counts(value, "--threads");
        if (arg == "--rounds") rounds = parse_counts(value, "--rounds").at(0);
        if (arg == "--repeats") repeats = parse_counts(value, "--repeats").at(0);
      } else {
        std::fprintf(stderr,
                     "usage: compare_onednn [--threads 1,2] [--rounds 3] [--repeats 10] "
                     "[--dtype float32|bfloat16] [--json]\n");
        return arg == "-h" || arg == "--help" ? 0 : 2;
      }
    }
    // normlab bench's default cases that oneDNN 2.6 has a primitive for; LayerNorm
    // over (C, H, W) is the (N, C*H*W) matrix normalized over its rows.
    const std::vector<Case> cases = {{"batch", {32, 64, 56, 56}},
                                     {"batch", {2, 64, 56, 56}},
                                     {"layer", {32, 64 * 56 * 56}},
                                     {"layer", {8192, 768}},
                                     {"layer", {2, 64 * 56 * 56}}};
    const bool half = dtype == "bfloat16";
    const memory::data_type type = half ? memory::data_type::bf16 : memory::data_type::f32;
    const auto ours_of = half ? time_normlab<normlab::bfloat16> : time_normlab<float>;
    std::printf(
        "oneDNN %d.%d.%d vs normlab %s, %s, median of %d calls after a warm-up, best of %d "
        "interleaved rounds; ratio = fastest oneDNN layout / normlab (above 1: normlab is "
        "faster)\n",
        dnnl_version()->major, dnnl_version()->minor, dnnl_version()->patch, normlab::version,
        dtype.c_str(), repeats, rounds);
    std::printf("%-6s %-14s %3s | %-8s %-8s %8s %8s %8s | %-8s %8s %8s %8s | %6s %6s %6s\n", "norm",
                "shape", "thr", "normlab", "layout", "fwd ms", "eval ms", "bwd ms", "oneDNN",
                "fwd ms", "eval ms", "bwd ms", "fwd", "eval", "bwd");
    for (int t : threads) {
      omp_set_num_threads(t);
      normlab::set_num_threads(unsigned(t));
      for (const Case& c : cases) {
        const bool image = c.shape.size() == 4;
        const std::vector<Tag> tags = image ? std::vector<Tag>{Tag::nchw, Tag::nhwc, Tag::nChw16c}
                                            : std::vector<Tag>{Tag::ab};
        const std::vector<normlab::Layout> ours =
            image ? std::vector<normlab::Layout>{normlab::Layout::nchw, normlab::Layout::nhwc}
                  : std::vector<normlab::Layout>{normlab::Layout::nchw};
        std::map<int, Phases> theirs;  // by tag index
        std::map<int, Phases> mine;    // by layout index
        for (int r = 0; r < rounds; ++r) {
          for (std::size_t i = 0; i < ours.size(); ++i)
            mine[int(i)].keep_best(ours_of(c, ours[i], repeats));
          for (std::size_t i = 0; i < tags.size(); ++i)
            theirs[int(i)].keep_best(time_onednn(c, tags[i], type, repeats));
        }
        // The fastest oneDNN layout per phase.
        Phases best;
        for (const auto& entry : theirs) best.keep_best(entry.second);
        std::string shape;
        for (std::size_t d : c.shape) shape += (shape.empty() ? "" : "x") + std::to_string(d);
        for (std::size_t i = 0; i < std::max(ours.size(), tags.size()); ++i) {
          const bool has_ours = i < ours.size(), has_theirs = i < tags.size();
          std::printf("%-6s %-14s %3d | ", c.norm.c_str(), shape.c_str(), t);
          if (has_ours)
            std::printf("%-8s %-8s %8.3f %8.3f %8.3f | ", "normlab", to_string(ours[i]),
                        mine[int(i)].forward, mine[int(i)].eval, mine[int(i)].backward);
          else
            std::printf("%-8s %-8s %8s %8s %8s | ", "", "", "", "", "");
          if (has_theirs)
            std::printf("%-8s %8.3f %8.3f %8.3f | ", layout_name(tags[i]).c_str(),
                        theirs[int(i)].forward, theirs[int(i)].eval, theirs[int(i)].backward);
          else
            std::printf("%-8s %8s %8s %8s | ", "", "", "", "");
          if (has_ours)
            std::printf("%6.2f %6.2f %6.2f\n", best.forward / mine[int(i)].forward,
                        best.eval / mine[int(i)].eval, best.backward / mine[int(i)].backward);
          else
            std::printf("\n");
        }
        if (json) {  // one line per case and thread count, for scripts/peer_table.py
          nlohmann::json line = {{"norm", c.norm}, {"shape", c.shape}, {"threads", t},
                                 {"dtype", dtype}, {"rounds", rounds}, {"repeats", repeats}};
          auto phases = [](const Phases& p) {
            return nlohmann::json{
                {"forward", p.forward}, {"forward_eval", p.eval}, {"backward", p.backward}};
          };
          for (std::size_t i = 0; i < ours.size(); ++i)
            line["normlab_ms"][to_string(ours[i])] = phases(mine[int(i)]);
          for (std::size_t i = 0; i < tags.size(); ++i)
            line["onednn_ms"][layout_name(tags[i])] = phases(theirs[int(i)]);
          std::printf("%s\n", line.dump().c_str());
        }
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compare_onednn: %s\n", e.what());
    return 1;
  }
}
