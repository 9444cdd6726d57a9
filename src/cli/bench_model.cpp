#include "bench_model.hpp"

#include <cstdio>
#include <iostream>
#include <string>

#include "normlab/normlab.hpp"

namespace normlab::cli {

int bench_model(const ModelBenchOptions& o) {
  set_num_threads(o.threads);  // as threads_per_cell: GEMMs split on the engine's threads
  set_blas_threads(1);
  Model<float> model = build_model<float>(o.model, o.norm, o.layout);
  model.initialize(0);
  // Synthetic Fashion-MNIST-shaped images: the time does not depend on the pixels.
  const Dataset data = make_synthetic(o.batch, 10, 0);
  Sgd<float> sgd(model.parameters(), 0.9, 5e-4);
  const StepProfile p =
      profile_training_step(model, sgd, data.images, data.labels, o.steps, /*lr=*/0.01);

  const BlasInfo blas = blas_info();
  if (o.json) {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& layer : p.layers)
      layers.push_back({{"layer", layer.name},
                        {"forward_seconds", layer.forward_seconds},
                        {"backward_seconds", layer.backward_seconds}});
    std::cout << nlohmann::json{{"model", o.model},
                                {"norm", o.norm},
                                {"layout", to_string(o.layout)},
                                {"batch", o.batch},
                                {"steps", o.steps},
                                {"threads", o.threads},
                                {"blas", to_json(blas)},
                                {"layers", layers},
                                {"loss_seconds", p.loss_seconds},
                                {"update_seconds", p.update_seconds},
                                {"step_seconds", p.step_seconds},
                                {"images_per_second", double(o.batch) / p.step_seconds}}
                     .dump()
              << "\n";
    return 0;
  }
  std::cout << "normlab bench --model " << o.model << ", norm " << o.norm.dump() << ", "
            << to_string(o.layout) << " activations, batch " << o.batch << ", " << o.threads
            << (o.threads == 1 ? " thread" : " threads") << ", mean of " << o.steps
            << " steps after a warm-up\n"
            << "BLAS: " << blas.library << " " << blas.version << ", core " << blas.core << " ("
            << blas.selection << "); engine kernels " << engine_isa() << "\n\n";
  const auto row = [&](const std::string& name, double forward, double backward) {
    char line[160];
    std::snprintf(line, sizeof line, "%-28s %10.3f %10.3f %10.3f %6.1f%%\n", name.c_str(),
                  1e3 * forward, 1e3 * backward, 1e3 * (forward + backward),
                  100 * (forward + backward) / p.step_seconds);
    std::cout << line;
  };
  char header[160];
  std::snprintf(header, sizeof header, "%-28s %10s %10s %10s %7s\n", "layer", "fwd ms", "bwd ms",
                "total ms", "share");
  std::cout << header;
  for (const auto& layer : p.layers) row(layer.name, layer.forward_seconds, layer.backward_seconds);
  row("softmax cross-entropy", p.loss_seconds, 0);
  row("sgd update", p.update_seconds, 0);
  double accounted = p.loss_seconds + p.update_seconds;
  for (const auto& layer : p.layers) accounted += layer.forward_seconds + layer.backward_seconds;
  row("other (zero_grad, timers)", p.step_seconds - accounted, 0);
  char total[160];
  std::snprintf(total, sizeof total, "%-28s %32.3f  -> %.0f images/s\n", "step",
                1e3 * p.step_seconds, double(o.batch) / p.step_seconds);
  std::cout << total;
  return 0;
}

}  // namespace normlab::cli
