#include "experiment_binding.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "experiment/results_store.hpp"
#include "json_python.hpp"
#include "normlab/experiment.hpp"

namespace py = pybind11;
namespace fs = std::filesystem;

namespace normlab::python {
namespace {

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path.string() + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) throw std::runtime_error(path.string() + ": cannot read");
  return text.str();
}

// A run folder: its config (resolved, checked as `normlab run` checks it) and
// its records in cell order, each checked as `normlab report` checks them.
py::dict load_results(const std::string& folder) {
  const fs::path dir(folder);
  if (!fs::is_directory(dir))
    throw std::invalid_argument(folder +
                                ": not a folder (give a run folder: config.json + results.jsonl)");
  const fs::path config_path = dir / "config.json";
  nlohmann::json config;
  try {
    config = parse_config(parse_json(read_text(config_path), config_path.string())).resolved;
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(config_path.string() + ": " + e.what() +
                                " (not the config.json normlab run wrote?)");
  }
  std::vector<nlohmann::json> records;
  for (JsonlRecord& record :
       read_jsonl(dir / "results.jsonl", check_run_record, kDamagedRecordHint))
    records.push_back(std::move(record.value));
  std::stable_sort(records.begin(), records.end(), [](const auto& a, const auto& b) {
    return a.value("index", 0) < b.value("index", 0);
  });
  py::dict result;
  result["config"] = from_json(config);
  result["records"] = from_json(records);
  return result;
}

// `config` is a path (str or os.PathLike) to a JSON config or a dict.
py::list run(const py::object& config, const py::object& out, bool fresh) {
  ExperimentConfig parsed;
  if (py::isinstance<py::dict>(config)) {
    parsed = parse_config(to_json(config, "config"));
    check_dataset(parsed.dataset);
  } else {
    const std::string path = py::str(py::module_::import("os").attr("fspath")(config));
    parsed = load_config(path, {});
  }
  RunOptions options;
  if (!out.is_none()) options.out_dir = py::str(py::module_::import("os").attr("fspath")(out));
  options.fresh = fresh;
  {
    // Training takes minutes: other Python threads run meanwhile. Nothing
    // below calls back into Python.
    py::gil_scoped_release release;
    run_experiment(parsed, options);
  }
  return load_results(options.out_dir.empty() ? parsed.output : options.out_dir)["records"]
      .cast<py::list>();
}

}  // namespace

void bind_experiments(py::module_& module) {
  module.def("run", &run, py::arg("config"), py::arg("out") = py::none(), py::arg("fresh") = false,
             R"(Runs an experiment as `normlab run` does and returns its records.

config: a path to a JSON config, or the config as a dict. out: the output folder
(default: the config's "output"); a folder holding results of the same config
is resumed, unless fresh=True, which discards them. Progress goes to stderr and
the table of test errors to stdout.)");
  module.def("load_results", &load_results, py::arg("folder"),
             "{'config': the resolved config, 'records': one dict per finished cell} of a run "
             "folder");
}

}  // namespace normlab::python
