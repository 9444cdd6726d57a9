// Conv2d on oneDNN's convolution primitives (float32). With channels-first
// activations oneDNN picks its own memory layouts (blocked, e.g. nChw16c) for
// the fastest kernels; x, w, y and the gradients stay NCHW / OIHW in normlab
// and are reordered at the edges. With channels-last activations (NHWC) the
// primitives are asked for nhwc, which oneDNN's kernels read and write as it
// is: only the small weight is reordered.
// The primitives of each input shape (and thread count) are made once and
// kept (training and evaluation use two batch sizes).
#include <omp.h>

#include <dnnl.hpp>
#include <map>
#include <tuple>

#include "conv2d.hpp"
#include "image_shape.hpp"
#include "learned_weight.hpp"
#include "normlab/threads.hpp"

namespace normlab {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;

// A buffer in the layout a primitive wants: the user's memory itself when the
// layouts agree, else a buffer of its own with the reorders from and to the
// user's layout.
struct Staged {
  memory own;  // empty when the user's memory is used directly
  dnnl::reorder from_user, to_user;
  memory get(const memory& user) const { return own ? own : user; }
};

Staged stage(const memory::desc& wanted, const memory::desc& user, const dnnl::engine& engine) {
  if (wanted == user) return {};
  Staged staged;
  staged.own = memory(wanted, engine);
  staged.from_user = dnnl::reorder(dnnl::reorder::primitive_desc(engine, user, engine, wanted));
  staged.to_user = dnnl::reorder(dnnl::reorder::primitive_desc(engine, wanted, engine, user));
  return staged;
}

// Everything for one input shape.
struct Primitives {
  memory::desc src, weights, bias, dst;  // the user's (plain) layouts
  dnnl::convolution_forward::primitive_desc forward;
  dnnl::convolution_backward_data::primitive_desc backward_data;
  dnnl::convolution_backward_weights::primitive_desc backward_weights;
  dnnl::convolution_forward forward_run;
  dnnl::convolution_backward_data backward_data_run;
  dnnl::convolution_backward_weights backward_weights_run;
  Staged src_f, weights_f, dst_f;              // forward
  Staged diff_dst_d, weights_d, diff_src_d;    // backward data
  Staged src_w, diff_dst_w, diff_weights_w;    // backward weights
  memory diff_weights_plain, diff_bias_plain;  // OIHW and (O) results, added to the grads
};

class OnednnConv2d final : public WeightedLayer<float> {
 public:
  OnednnConv2d(std::size_t in, std::size_t out, std::size_t kernel, std::size_t stride,
               std::size_t padding, bool bias, const WeightReparameterization& weight_norm,
               Layout layout)
      : WeightedLayer<float>({out, in, kernel, kernel}, bias, weight_norm),
        in_(in),
        out_(out),
        kernel_(kernel),
        stride_(stride),
        padding_(padding),
        layout_(layout),
        engine_(dnnl::engine::kind::cpu, 0),
        stream_(engine_) {}

  // x: (N, C_in, H, W) -> y: (N, C_out, H_out, W_out), or channels last
  // (N, H, W, C_in) -> (N, H_out, W_out, C_out)
  const xt::xarray<float>& forward(const xt::xarray<float>& x, Mode mode) override {
    g_ = conv_geometry(name(), x, in_, kernel_, stride_, padding_, layout_);
    Primitives& p = primitives_for(g_);
    const xt::xarray<float>& w = this->weight_.weight(mode);
    y_.resize(ImageShape{g_.batch, out_, g_.out_height, g_.out_width}.in(layout_));
    x_ = &x;
    const memory src(p.src, engine_, const_cast<float*>(x.data()));
    const memory weights(p.weights, engine_, const_cast<float*>(w.data()));
    const memory dst(p.dst, engine_, y_.data());
    into(p.src_f, src);
    into(p.weights_f, weights);
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, p.src_f.get(src)},
                                            {DNNL_ARG_WEIGHTS, p.weights_f.get(weights)},
                                            {DNNL_ARG_DST, p.dst_f.get(dst)}};
    if (this->weight_.has_bias())
      args[DNNL_ARG_BIAS] = memory(p.bias, engine_, this->weight_.bias());
    p.forward_run.execute(stream_, args);
    out_of(p.dst_f, dst);
    stream_.wait();
    last_weight_ = &w;
    return y_;
  }

  std::string name() const override { return conv_name(kernel_, in_, out_); }

 private:
  void backward_pass(const xt::xarray<float>& dy, bool input_gradient) override {
    Primitives& p = primitives_for(g_);
    const memory diff_dst(p.dst, engine_, const_cast<float*>(dy.data()));
    const memory src(p.src, engine_, const_cast<float*>(x_->data()));
    if (input_gradient) {  // dx = the transposed convolution of dy with w
      dx_.resize(ImageShape{g_.batch, in_, g_.height, g_.width}.in(layout_));
      const memory weights(p.weights, engine_, const_cast<float*>(last_weight_->data()));
      const memory diff_src(p.src, engine_, dx_.data());
      into(p.diff_dst_d, diff_dst);
      into(p.weights_d, weights);
      p.backward_data_run.execute(stream_, {{DNNL_ARG_DIFF_DST, p.diff_dst_d.get(diff_dst)},
                                            {DNNL_ARG_WEIGHTS, p.weights_d.get(weights)},
                                            {DNNL_ARG_DIFF_SRC, p.diff_src_d.get(diff_src)}});
      out_of(p.diff_src_d, diff_src);
    }

    // dw = dy (x) x, db = sum of dy; oneDNN overwrites, the layer accumulates.
    into(p.src_w, src);
    into(p.diff_dst_w, diff_dst);
    std::unordered_map<int, memory> args = {
        {DNNL_ARG_SRC, p.src_w.get(src)},
        {DNNL_ARG_DIFF_DST, p.diff_dst_w.get(diff_dst)},
        {DNNL_ARG_DIFF_WEIGHTS, p.diff_weights_w.get(p.diff_weights_plain)}};
    if (this->weight_.has_bias()) args[DNNL_ARG_DIFF_BIAS] = p.diff_bias_plain;
    p.backward_weights_run.execute(stream_, args);
    out_of(p.diff_weights_w, p.diff_weights_plain);
    stream_.wait();

    xt::xarray<float>& dw = this->weight_.weight_grad();
    const float* computed = static_cast<const float*>(p.diff_weights_plain.get_data_handle());
    for (std::size_t i = 0; i < dw.size(); ++i) dw.data()[i] += computed[i];
    if (this->weight_.has_bias()) {
      const float* db = static_cast<const float*>(p.diff_bias_plain.get_data_handle());
      for (std::size_t o = 0; o < out_; ++o) this->weight_.bias_grad()[o] += db[o];
    }
    this->weight_.finish_backward();
  }

  // Reorders the user's memory into a staged buffer (before a primitive reads it)...
  void into(const Staged& staged, const memory& user) {
    if (staged.own)
      staged.from_user.execute(stream_, {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, staged.own}});
  }
  // ...or a staged result back into the user's memory.
  void out_of(const Staged& staged, const memory& user) {
    if (staged.own)
      staged.to_user.execute(stream_, {{DNNL_ARG_FROM, staged.own}, {DNNL_ARG_TO, user}});
  }

  // The primitives for this shape, and this thread's OpenMP team size set for
  // them: oneDNN plans a primitive's work for the threads there are when it is
  // made. A small convolution runs on one thread: waking OpenMP's sleeping
  // threads costs more than it would save.
  Primitives& primitives_for(const ConvGeometry& g) {
    constexpr std::size_t kMinParallelMacs = std::size_t(16) << 20;
    const std::size_t macs = g.batch * out_ * g.pixels() * g.patch();
    const int threads = macs >= kMinParallelMacs ? int(num_threads()) : 1;
    omp_set_num_threads(threads);  // this thread's parallel regions only
    const auto key = std::make_tuple(g.batch, g.height, g.width, threads);
    auto found = cache_.find(key);
    if (found != cache_.end()) return found->second;
    using dims = memory::dims;
    const memory::dim n = memory::dim(g.batch), c = memory::dim(in_), o = memory::dim(out_),
                      k = memory::dim(kernel_);
    const dims src_dims = {n, c, memory::dim(g.height), memory::dim(g.width)};
    const dims weight_dims = {o, c, k, k};
    const dims dst_dims = {n, o, memory::dim(g.out_height), memory::dim(g.out_width)};
    const dims strides = {memory::dim(stride_), memory::dim(stride_)};
    const dims pad = {memory::dim(padding_), memory::dim(padding_)};
    const auto f32 = memory::data_type::f32;
    Primitives p;
    const Tag activations = layout_ == Layout::nhwc ? Tag::nhwc : Tag::nchw;
    p.src = memory::desc(src_dims, f32, activations);
    p.weights = memory::desc(weight_dims, f32, Tag::oihw);
    p.bias = memory::desc({o}, f32, Tag::x);
    p.dst = memory::desc(dst_dims, f32, activations);
    // "any": oneDNN chooses the layouts of its fastest kernels. Channels-last
    // activations stay nhwc (the point of that layout: no reorders); the
    // weights are still oneDNN's choice.
    const Tag kernel_activations = layout_ == Layout::nhwc ? Tag::nhwc : Tag::any;
    const memory::desc src_any(src_dims, f32, kernel_activations),
        weights_any(weight_dims, f32, Tag::any), dst_any(dst_dims, f32, kernel_activations);
    const bool bias = this->weight_.has_bias();
    const auto algorithm = dnnl::algorithm::convolution_direct;
    const auto forward_desc =
        bias
            ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algorithm, src_any,
                                              weights_any, p.bias, dst_any, strides, pad, pad)
            : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algorithm, src_any,
                                              weights_any, dst_any, strides, pad, pad);
    p.forward = dnnl::convolution_forward::primitive_desc(forward_desc, engine_);
    p.backward_data = dnnl::convolution_backward_data::primitive_desc(
        dnnl::convolution_backward_data::desc(algorithm, src_any, weights_any, dst_any, strides,
                                              pad, pad),
        engine_, p.forward);
    p.backward_weights = dnnl::convolution_backward_weights::primitive_desc(
        bias ? dnnl::convolution_backward_weights::desc(algorithm, src_any, weights_any, p.bias,
                                                        dst_any, strides, pad, pad)
             : dnnl::convolution_backward_weights::desc(algorithm, src_any, weights_any, dst_any,
                                                        strides, pad, pad),
        engine_, p.forward);
    p.forward_run = dnnl::convolution_forward(p.forward);
    p.backward_data_run = dnnl::convolution_backward_data(p.backward_data);
    p.backward_weights_run = dnnl::convolution_backward_weights(p.backward_weights);
    p.src_f = stage(p.forward.src_desc(), p.src, engine_);
    p.weights_f = stage(p.forward.weights_desc(), p.weights, engine_);
    p.dst_f = stage(p.forward.dst_desc(), p.dst, engine_);
    p.diff_dst_d = stage(p.backward_data.diff_dst_desc(), p.dst, engine_);
    p.weights_d = stage(p.backward_data.weights_desc(), p.weights, engine_);
    p.diff_src_d = stage(p.backward_data.diff_src_desc(), p.src, engine_);
    p.src_w = stage(p.backward_weights.src_desc(), p.src, engine_);
    p.diff_dst_w = stage(p.backward_weights.diff_dst_desc(), p.dst, engine_);
    p.diff_weights_w = stage(p.backward_weights.diff_weights_desc(), p.weights, engine_);
    p.diff_weights_plain = memory(p.weights, engine_);
    p.diff_bias_plain = memory(p.bias, engine_);
    return cache_.emplace(key, std::move(p)).first->second;
  }

  std::size_t in_, out_, kernel_, stride_, padding_;
  Layout layout_;
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::map<std::tuple<std::size_t, std::size_t, std::size_t, int>, Primitives> cache_;
  ConvGeometry g_{};
  const xt::xarray<float>* x_ = nullptr;
  const xt::xarray<float>* last_weight_ = nullptr;
  xt::xarray<float> y_;
};

}  // namespace

std::unique_ptr<Layer<float>> make_onednn_conv2d(std::size_t in, std::size_t out,
                                                 std::size_t kernel, std::size_t stride,
                                                 std::size_t padding, bool bias,
                                                 const WeightReparameterization& weight_norm,
                                                 Layout layout) {
  return std::make_unique<OnednnConv2d>(in, out, kernel, stride, padding, bias, weight_norm,
                                        layout);
}

}  // namespace normlab
