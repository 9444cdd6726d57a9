// libFuzzer target: a run folder's results.jsonl, read as `normlab run` (on
// resume) and `normlab report` read it: bounded lines, each record checked
// (check_run_record), then checked against the folder's config (a cell of it,
// its config digest, no cell twice). Also the UTF-8 checks on the raw bytes.
#include <cstdint>
#include <cstdlib>
#include <stdexcept>

#include "experiment/results_store.hpp"
#include "fuzz_input.hpp"
#include "io/utf8.hpp"
#include "normlab/experiment.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const nlohmann::json config =
      normlab::parse_config(nlohmann::json::parse(normlab::fuzz::kSmallConfig)).resolved;
  const std::string path = normlab::fuzz::as_file(data, size, "results.jsonl");
  try {
    const std::vector<normlab::JsonlRecord> records =
        normlab::read_jsonl(path, normlab::check_run_record, "fuzz");
    normlab::check_records_belong(records, config, path);
  } catch (const std::exception&) {
  }
  // What utf8_shown gives is UTF-8, and as long as the input when it was UTF-8.
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::string shown = normlab::utf8_shown(text);
  if (normlab::first_invalid_utf8(shown) != shown.size()) std::abort();
  if (normlab::first_invalid_utf8(text) == text.size() && shown != text) std::abort();
  return 0;
}
