// `normlab report`: runs and probes as gnuplot figures (SVG and PNG) and
// tables, gathered in report.html and report.md. Every figure is a .gp script
// plus a .dat file, so it can be redrawn or restyled with gnuplot alone.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/safe_open.hpp"
#include "io/utf8.hpp"
#include "normlab/analysis.hpp"
#include "normlab/experiment.hpp"
#include "normlab/files.hpp"
#include "normlab/registry.hpp"
#include "results_store.hpp"

namespace normlab {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* const kInstallHint =
    "gnuplot was not found on PATH, so the figures were not drawn. Install it (Debian/Ubuntu: "
    "apt-get install gnuplot-nox) and run normlab report again, or run `gnuplot NAME.gp` in the "
    "report folder.";

// Distinct colours, one per norm (the same norm keeps its colour in every figure).
const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                               "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};

// ---- gnuplot figures -------------------------------------------------------

struct Series {
  std::string title;
  std::vector<std::vector<double>> rows;  // x, y[, y error]
  std::string style;                      // "with linespoints ..." and friends
};

struct Panel {
  std::string title, xlabel, ylabel;
  std::vector<std::size_t> log2_ticks;  // non-empty: a log2 x axis with these ticks
  bool log_y = false;
  double ymin = NAN, ymax = NAN;
  double xtics_step = 0;           // 0: gnuplot's choice
  std::vector<std::string> extra;  // more plot items: reference functions
  std::vector<Series> series;
};

Panel make_panel(std::string title, std::string xlabel, std::string ylabel,
                 std::vector<std::size_t> log2_ticks = {}, bool log_y = false) {
  Panel p;
  p.title = std::move(title);
  p.xlabel = std::move(xlabel);
  p.ylabel = std::move(ylabel);
  p.log2_ticks = std::move(log2_ticks);
  p.log_y = log_y;
  return p;
}

struct Figure {
  std::string name, title;
  std::vector<Panel> panels;
};

// Text on one line of a generated gnuplot script or data file: control
// characters (a newline would end the line and start a command or a data row)
// become spaces and bytes that are not UTF-8 become '?'.
std::string gnuplot_text(const std::string& text) {
  std::string line = utf8_shown(text);  // a multi-byte character: bytes >= 0x80
  for (char& c : line)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return line;
}

// Text in a generated gnuplot script, as data, never code: a single-quoted
// gnuplot string of gnuplot_text, in which nothing is expanded (no backslash
// escapes, no `command` substitution, no @macros) and '' is a quote. The one
// function for every string written to a .gp file, comments included.
std::string gnuplot_string(const std::string& text) {
  std::string q = "'";
  for (const char c : gnuplot_text(text)) q += c == '\'' ? std::string("''") : std::string(1, c);
  return q + "'";
}

std::string style_for(std::size_t index, const std::string& with = "linespoints", int dash = 1) {
  return "with " + with + " lw 2 pt " + std::to_string(5 + 2 * int(index % 4)) + " ps 1.1 dt " +
         std::to_string(dash) + " lc rgb '" + kColors[index % std::size(kColors)] + "'";
}

std::string format_number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.10g", v);
  return text;
}

// A norm label for legends, where space is short: "ghost(virtual_batch_size=4)"
// becomes "ghost V=4". Tables keep the full label.
std::string legend_label(const std::string& label) {
  const auto open = label.find('(');
  if (open == std::string::npos || label.back() != ')') return label;
  static const std::map<std::string, std::string> kShort = {{"virtual_batch_size", "V"},
                                                            {"warmup_steps", "warmup"},
                                                            {"track_running_stats", "track"},
                                                            {"normalized_shape", "shape"}};
  std::string text = label.substr(0, open), arg;
  const auto flush = [&] {
    const auto eq = arg.find('=');
    const std::string key = arg.substr(0, eq);
    const auto short_key = kShort.find(key);
    text += " " + (short_key == kShort.end() ? key : short_key->second) +
            (eq == std::string::npos ? "" : arg.substr(eq));
    arg.clear();
  };
  int depth = 0;  // inside [...] or {...}: a comma belongs to the value
  for (std::size_t i = open + 1; i + 1 < label.size(); ++i) {
    const char c = label[i];
    if (c == '[' || c == '{') ++depth;
    if (c == ']' || c == '}') --depth;
    if (c == ',' && depth == 0)
      flush();
    else
      arg += c;
  }
  flush();
  return text;
}

// Writes NAME.dat (one index block per series) and NAME.gp; returns the script name.
std::string write_figure(const fs::path& dir, const Figure& figure) {
  std::string data, plots;
  int block = 0;
  const std::size_t width = figure.panels.size() > 1 ? 1500 : 1000, height = 540;
  for (const Panel& panel : figure.panels) {
    std::string p =
        "  unset logscale\n  unset label\n  set grid\n  set offsets 0, 0, 0, 0\n  set autoscale\n"
        "  set ytics autofreq\n";
    // A key below the frame never hides data and leaves the panel its width.
    p += "  set key outside bottom center horizontal Left reverse samplen 2.5 noautotitle "
         "height 0.6\n";
    p += "  set title " + gnuplot_string(panel.title) + "\n  set xlabel " +
         gnuplot_string(panel.xlabel) + "\n  set ylabel " + gnuplot_string(panel.ylabel) + "\n";
    if (!panel.log2_ticks.empty()) {
      const auto [lo, hi] = std::minmax_element(panel.log2_ticks.begin(), panel.log2_ticks.end());
      // Largest B first, as the tables' columns read (gnuplot reverses a
      // range given from high to low).
      p += "  set logscale x 2\n  set xrange [" + format_number(double(*hi) * 1.3) + ":" +
           format_number(double(*lo) / 1.3) + "]\n  set xtics (";
      for (std::size_t i = 0; i < panel.log2_ticks.size(); ++i)
        p += (i ? ", " : "") + std::to_string(panel.log2_ticks[i]);
      p += ")\n";
    } else {
      p += "  set xrange [*:*]\n";
      p += panel.xtics_step > 0 ? "  set xtics " + format_number(panel.xtics_step) + "\n"
                                : "  set xtics autofreq\n";
    }
    if (panel.log_y)  // a tight range with 1-2-3-5 ticks: decades alone may leave it unlabelled
      p += "  set logscale y\n  set autoscale yfix\n  set offsets 0, 0, graph 0.05, graph 0.05\n"
           "  set ytics (0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, "
           "1, 2, "
           "3, 5, 10, 20, 30, 50, 100)\n";
    else  // no point on the frame: autoscale pads, then extends to a tick
      p += "  set offsets 0, 0, graph 0.04, graph 0.04\n";
    p += "  set yrange [" +
         (std::isnan(panel.ymin) ? std::string("*") : format_number(panel.ymin)) + ":" +
         (std::isnan(panel.ymax) ? std::string("*") : format_number(panel.ymax)) + "]\n";
    std::vector<std::string> items = panel.extra;
    for (const Series& s : panel.series) {
      if (s.rows.empty()) continue;
      data += "# " + gnuplot_text(s.title) + "\n";  // a comment of the data file
      for (const auto& row : s.rows) {
        for (std::size_t i = 0; i < row.size(); ++i) data += (i ? " " : "") + format_number(row[i]);
        data += "\n";
      }
      data += "\n\n";
      const std::string columns = s.rows.front().size() > 2 ? "1:2:3" : "1:2";
      items.push_back(gnuplot_string(figure.name + ".dat") + " index " + std::to_string(block++) +
                      " using " + columns + " " + s.style + " title " + gnuplot_string(s.title));
    }
    if (items.empty()) {  // nothing measured: an empty frame that says so
      p += "  set label \"no data\" at graph 0.5, 0.5 center\n";
      if (std::isnan(panel.ymin)) p += "  set yrange [0:1]\n";
      items.push_back("NaN notitle");
    }
    p += "  plot ";
    for (std::size_t i = 0; i < items.size(); ++i) p += (i ? ", \\\n       " : "") + items[i];
    plots += p + "\n";
  }
  write_file(dir / (figure.name + ".dat"), data);
  const std::string script = figure.name + ".gp";
  std::ostringstream gp;
  gp << "# " << gnuplot_string(figure.title) << "\n# Written by normlab report; `gnuplot " << script
     << "` in this folder redraws " << figure.name << ".svg and " << figure.name << ".png.\n"
     << "set encoding utf8\n"
     << "do for [fmt in \"svg png\"] {\n"
     << "  if (fmt eq \"svg\") {\n"
     << "    set terminal svg size " << width << "," << height
     << " dynamic noenhanced font \"sans,13\" "
     << "background rgb \"white\"\n"
     << "  } else {\n"  // pngcairo draws antialiased; the libgd png terminal is the fallback
     << "    if (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) {\n"
     << "      set terminal pngcairo size " << width << "," << height
     << " noenhanced font \"sans,11\"\n"
     << "    } else {\n"
     << "      set terminal png size " << width << "," << height << " noenhanced\n"
     << "    }\n"
     << "  }\n"
     << "  set output \"" << figure.name << ".\" . fmt\n"
     << "  set multiplot layout 1," << figure.panels.size() << " title "
     << gnuplot_string(figure.title) << "\n"
     << plots << "  unset multiplot\n  unset output\n}\n";
  write_file(dir / script, gp.str());
  return script;
}

// ---- running gnuplot -------------------------------------------------------

// `name` if it has a slash, else its first executable match on PATH; "" if none.
std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const fs::path candidate = fs::path(dir.empty() ? "." : dir) / name;
    if (::access(candidate.c_str(), X_OK) == 0 && fs::is_regular_file(candidate))
      return candidate.string();
  }
  return "";
}

// Runs `program script` in `dir` with stderr to `log`; returns the exit status.
int run_in(const std::string& program, const std::string& script, const fs::path& dir,
           const fs::path& log) {
  const pid_t pid = ::fork();
  if (pid < 0)
    throw std::runtime_error(std::string("cannot start gnuplot: ") + std::strerror(errno));
  if (pid == 0) {
    const int err = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0644);
    const int null = ::open("/dev/null", O_RDWR);
    if (err < 0 || null < 0 || ::chdir(dir.c_str()) != 0) ::_exit(126);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(err, 2);
    ::execl(program.c_str(), program.c_str(), script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A figure file gnuplot wrote must be whole: a PNG starts with its signature
// and ends with the IEND chunk; an SVG ends with </svg>. Else an error naming
// the file and what gnuplot said.
void check_figure_file(const fs::path& path, const std::string& gnuplot_messages) {
  const std::size_t limit = std::size_t(256) << 20;  // far above any figure of ours
  std::string bytes;
  try {
    bytes = read_bounded(path.string(), limit, "figure", /*follow_links=*/false);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string(e.what()) +
                             " (gnuplot: " + gnuplot_messages.substr(0, 200) + ")");
  }
  static const std::string kPngSignature("\x89PNG\r\n\x1a\n", 8);
  static const std::string kPngEnd("\0\0\0\0IEND\xae\x42\x60\x82", 12);
  bool whole = false;
  if (path.extension() == ".png") {
    whole = bytes.size() >= kPngSignature.size() + kPngEnd.size() &&
            bytes.compare(0, kPngSignature.size(), kPngSignature) == 0 &&
            bytes.compare(bytes.size() - kPngEnd.size(), kPngEnd.size(), kPngEnd) == 0;
  } else {
    const std::size_t end = bytes.find_last_not_of(" \t\r\n");
    whole = end != std::string::npos && end + 1 >= 6 && bytes.compare(end - 5, 6, "</svg>") == 0;
  }
  if (!whole)
    throw std::runtime_error(
        path.string() + ": gnuplot exited 0 but the " + path.extension().string().substr(1) +
        " file is incomplete (" + std::to_string(bytes.size()) +
        " bytes; a full disk or a file-size limit?)" +
        (gnuplot_messages.empty() ? "" : ": " + gnuplot_messages.substr(0, 200)));
}

// ---- inputs ----------------------------------------------------------------

std::vector<json> records_of(const fs::path& path, void (*check)(const json&),
                             const std::string& hint) {
  std::vector<json> records;
  for (JsonlRecord& record : read_jsonl(path, check, hint))
    records.push_back(std::move(record.value));
  return records;
}

json read_json(const fs::path& path) {
  const json j = parse_json(
      read_bounded(path.string(), kMaxConfigBytes, "config file", /*follow_links=*/false),
      path.string());
  if (!j.is_object())
    throw std::runtime_error(path.string() + ": expected an object, got " + json_kind(j));
  return j;
}

// A run's config.json, checked as `normlab run` checks a config and resolved:
// every key the report reads is then there with its type.
json read_run_config(const fs::path& path) {
  try {
    return parse_config(read_json(path)).resolved;
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(path.string() + ": " + e.what() +
                             " (not the config.json normlab run wrote?)");
  }
}

// probe_config.json: {"config": the resolved config, ...}; only config.name is read.
json read_probe_config(const fs::path& path) {
  const json info = read_json(path);
  const auto config = info.find("config");
  if (config != info.end() &&
      !(config->is_object() && (!config->contains("name") || config->at("name").is_string())))
    throw std::runtime_error(path.string() +
                             ": config: expected the resolved config object, with a string name");
  return info;
}

const char* const kDamagedProbeHint =
    "a damaged record: delete that line, or run normlab probe again";

struct Run {
  fs::path dir;
  json config;
  std::vector<json> records;         // by cell index
  std::vector<json> search_records;  // the learning-rate search's runs (search.jsonl)
};

struct Probe {
  std::string name;  // for file names: "<run or config name>_<folder>"
  fs::path dir;
  json config;  // probe_config.json: the resolved config and where the model came from
  std::vector<json> records;
};

std::string slug(const std::string& text) {
  std::string s;
  for (char c : text) s += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return s;
}

// `run_name`: the name of the run folder `dir` was found in, "" when given directly.
void collect(const fs::path& dir, std::vector<Run>& runs, std::vector<Probe>& probes,
             const std::string& run_name = "") {
  if (!fs::is_directory(dir)) throw std::runtime_error(dir.string() + ": not a folder");
  const bool is_run = fs::exists(dir / "results.jsonl") && fs::exists(dir / "config.json");
  bool found = is_run;
  if (is_run) {
    Run run{dir, read_run_config(dir / "config.json"), {}, {}};
    // Records of another config, or a cell recorded twice, are refused by line.
    std::vector<JsonlRecord> lines =
        read_jsonl(dir / "results.jsonl", check_run_record, kDamagedRecordHint);
    check_records_belong(lines, run.config, dir / "results.jsonl");
    for (JsonlRecord& line : lines) run.records.push_back(std::move(line.value));
    std::sort(run.records.begin(), run.records.end(), [](const json& a, const json& b) {
      return a.value("index", 0) < b.value("index", 0);
    });
    if (fs::exists(dir / "search.jsonl"))
      run.search_records = records_of(dir / "search.jsonl", check_run_record, kDamagedRecordHint);
    runs.push_back(std::move(run));
  }
  if (fs::exists(dir / "probe.jsonl")) {
    const fs::path config = dir / "probe_config.json";
    Probe probe{"", dir, fs::exists(config) ? read_probe_config(config) : json::object(),
                records_of(dir / "probe.jsonl", check_probe_record, kDamagedProbeHint)};
    const std::string owner = !run_name.empty()
                                  ? run_name
                                  : probe.config.value("config", json::object()).value("name", "");
    probe.name = (owner.empty() ? "" : owner + "_") + dir.filename().string();
    probes.push_back(std::move(probe));
    found = true;
  }
  if (is_run) {  // a run folder: the probes inside it too
    std::vector<fs::path> subdirs;
    for (const auto& entry : fs::directory_iterator(dir))
      if (entry.is_directory() && fs::exists(entry.path() / "probe.jsonl"))
        subdirs.push_back(entry.path());
    std::sort(subdirs.begin(), subdirs.end());
    const std::string name = runs.back().config.value("name", std::string("run"));
    for (const fs::path& sub : subdirs) collect(sub, runs, probes, name);
  }
  if (!found)
    throw std::runtime_error(dir.string() +
                             ": neither a run folder (config.json + results.jsonl) "
                             "nor a probe folder (probe.jsonl)");
}

// ---- tables ----------------------------------------------------------------

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '&')
      out += "&amp;";
    else if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '"')
      out += "&quot;";
    else
      out += c;
  }
  return out;
}

std::vector<std::string> split_row(const std::string& line) {
  std::vector<std::string> cells;
  std::stringstream in(line);
  std::string cell;
  std::getline(in, cell, '|');  // before the first bar
  while (std::getline(in, cell, '|')) {
    const auto first = cell.find_first_not_of(' '), last = cell.find_last_not_of(' ');
    cells.push_back(first == std::string::npos ? "" : cell.substr(first, last - first + 1));
  }
  if (!cells.empty() && cells.back().empty()) cells.pop_back();  // after the last bar
  return cells;
}

// A Markdown table (as error_table and probe_table write them) as HTML.
std::string markdown_to_html(const std::string& markdown) {
  std::vector<std::vector<std::string>> rows;
  std::stringstream in(markdown);
  for (std::string line; std::getline(in, line);) rows.push_back(split_row(line));
  std::vector<bool> right;  // from the alignment row: "---:" is right-aligned
  if (rows.size() > 1)
    for (const auto& c : rows[1]) right.push_back(!c.empty() && c.back() == ':');
  std::string html = "<table>\n";
  for (std::size_t row = 0; row < rows.size(); ++row) {
    if (row == 1) continue;
    const std::vector<std::string>& cells = rows[row];
    html += "<tr>";
    for (std::size_t i = 0; i < cells.size(); ++i) {
      const char* tag = row == 0 ? "th" : "td";
      html += std::string("<") + tag + (i < right.size() && right[i] ? " class=\"num\"" : "") +
              ">" + html_escape(cells[i]) + "</" + tag + ">";
    }
    html += "</tr>\n";
  }
  return html + "</table>\n";
}

// ---- the report ------------------------------------------------------------

// The HTML placeholder of a drawn figure, replaced by its SVG (inline_figures).
std::string figure_placeholder(const std::string& name) {
  return "<!-- normlab figure " + name + " -->";
}

// The report as Markdown and HTML, built side by side.
struct Document {
  std::string markdown, html;
  // Level-2 headings, for the contents list (contents()).
  std::vector<std::string> sections;
  void heading(int level, const std::string& text) {
    std::string id;
    if (level == 2) {
      sections.push_back(text);
      id = " id=\"section-" + std::to_string(sections.size()) + "\"";
    }
    markdown += std::string(std::size_t(level), '#') + " " + text + "\n\n";
    html += "<h" + std::to_string(level) + id + ">" + html_escape(text) + "</h" +
            std::to_string(level) + ">\n";
  }
  // The contents list, Markdown and HTML, of the sections so far.
  std::pair<std::string, std::string> contents() const {
    if (sections.size() < 2) return {};
    std::string md = "Contents:\n\n", list = "<nav><p class=\"caption\">Contents</p><ol>\n";
    for (std::size_t i = 0; i < sections.size(); ++i) {
      md += std::to_string(i + 1) + ". " + sections[i] + "\n";
      list += "<li><a href=\"#section-" + std::to_string(i + 1) + "\">" + html_escape(sections[i]) +
              "</a></li>\n";
    }
    return {md + "\n", list + "</ol></nav>\n"};
  }
  void paragraph(const std::string& text) {
    markdown += text + "\n\n";
    html += "<p>" + html_escape(text) + "</p>\n";
  }
  void table(const std::string& caption, const std::string& markdown_table) {
    markdown += "**" + caption + "**\n\n" + markdown_table + "\n";
    html += "<p class=\"caption\">" + html_escape(caption) + "</p>\n" +
            markdown_to_html(markdown_table);
  }
  bool images = true;  // false without gnuplot: link the scripts and data only
  void figure(const std::string& name, const std::string& caption) {
    const std::string files =
        "<a href=\"" + name + ".gp\">gnuplot script</a>, <a href=\"" + name + ".dat\">data</a>";
    if (images) {
      markdown += "![" + caption + "](" + name + ".png)\n\n";
      html += "<figure>" + figure_placeholder(name) + "<figcaption>" + html_escape(caption) +
              " (<a href=\"" + name + ".png\">PNG</a>, <a href=\"" + name + ".svg\">SVG</a>, " +
              files + ")</figcaption></figure>\n";
    } else {
      markdown += "*Figure not drawn: " + caption + " (`gnuplot " + name + ".gp`)*\n\n";
      html += "<p>Figure not drawn: " + html_escape(caption) + " (" + files + ")</p>\n";
    }
  }
};

std::vector<std::size_t> sorted_unique(std::vector<std::size_t> values) {
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  return values;
}

std::string describe_run(const Run& run) {
  const json& c = run.config;
  return c.value("name", std::string("run")) + " (" + c.value("model", std::string("?")) + ", " +
         c["dataset"].value("type", std::string("?")) + ")";
}

std::optional<double> percent(const json& v) {
  if (!v.is_number()) return std::nullopt;
  return 100.0 * v.get<double>();
}

// Test error vs batch size, one line per norm (GroupNorm paper, Figure 1), and
// a zoom on the useful range when a few cells are far off it.
Figure error_figure(const std::string& name, const Run& run, const ResultGrid& grid) {
  const std::vector<std::size_t> ticks = sorted_unique(grid.batch_sizes);
  // With several seeds: error bars of the 95% interval of the mean.
  const bool bars = grid.most_seeds() >= 2;
  Panel all = make_panel(bars ? "all cells (mean over seeds, bars: 95% CI; diverged seeds left out)"
                              : "all cells (diverged cells left out)",
                         "batch size B (log2 scale)", "test error (%)", ticks);
  double lo = INFINITY, hi = -INFINITY;
  for (std::size_t i = 0; i < grid.norms.size(); ++i) {
    Series s{legend_label(grid.norms[i]), {}, style_for(i, bars ? "yerrorlines" : "linespoints")};
    for (std::size_t b : ticks) {
      const GridCell& cell = grid.at(grid.norms[i], b);
      if (cell.values.empty()) continue;
      const SeedSummary summary = cell.summary();
      s.rows.push_back({double(b), summary.mean});
      if (bars) s.rows.back().push_back(summary.n >= 2 ? summary.ci95 : 0.0);
      lo = std::min(lo, summary.mean);
      hi = std::max(hi, summary.mean);
    }
    all.series.push_back(s);
  }
  const json& dataset = run.config["dataset"];
  const double classes = dataset.value("classes", 10.0);
  const double chance = 100.0 * (1.0 - 1.0 / classes);
  if (hi > 0.8 * chance) {  // some norm did no better than guessing: show where that is
    all.extra.push_back(format_number(chance) + " with lines dt 3 lw 1.5 lc rgb '#555555' title " +
                        gnuplot_string("chance (" + format_number(chance) + "%)"));
    all.ymax = std::ceil(chance / 5 + 1) * 5;
  }
  if (bars) {  // an interval may reach past 0 or 100; the error itself cannot
    all.ymin = 0;
    if (std::isnan(all.ymax)) all.ymax = 100;
  }
  Figure figure{name, describe_run(run) + ": test error vs batch size", {all}};
  // Up to twice the best error: BatchNorm's slow climb stays readable next to a collapse.
  const double zoom = std::ceil(2.0 * lo);
  if (std::isfinite(lo) && hi > zoom) {
    Panel z = all;
    z.title = "zoom: error up to " + format_number(zoom) + "%";
    z.extra.clear();
    z.ymin = std::max(0.0, std::floor(lo) - 1);
    z.ymax = zoom;
    figure.panels.push_back(z);
  }
  return figure;
}

// Train loss per norm at the smallest and the largest batch size (first seed):
// the per-step loss curve when the records have one, else per-epoch means.
Figure loss_figure(const std::string& name, const Run& run, const ResultGrid& grid) {
  const std::vector<std::size_t> ticks = sorted_unique(grid.batch_sizes);
  Figure figure{name, describe_run(run) + ": training loss", {}};
  std::vector<std::size_t> shown = {ticks.front()};
  if (ticks.back() != ticks.front()) shown.push_back(ticks.back());
  bool per_epoch_only = false;
  for (std::size_t b : shown) {
    Panel panel =
        make_panel("B = " + std::to_string(b), "epoch", "train loss (log scale)", {}, true);
    for (std::size_t i = 0; i < grid.norms.size(); ++i) {
      const auto r = std::find_if(run.records.begin(), run.records.end(), [&](const json& rec) {
        return rec["norm"] == grid.norms[i] && rec["batch_size"] == b;
      });
      if (r == run.records.end()) continue;
      Series s{legend_label(grid.norms[i]) + ((*r)["diverged"].get<bool>() ? " (diverged)" : ""),
               {},
               style_for(i, "lines")};
      const json curve = r->value("loss_curve", json());
      if (curve.is_object() && !curve["loss"].empty()) {
        for (std::size_t k = 0; k < curve["loss"].size(); ++k)
          s.rows.push_back({curve["epoch"][k].get<double>(), curve["loss"][k].get<double>()});
      } else {
        per_epoch_only = true;
        s.style = style_for(i);
        panel.xtics_step = 1;
        for (std::size_t e = 0; e < (*r)["train_loss"].size(); ++e)
          s.rows.push_back({double(e + 1), (*r)["train_loss"][e].get<double>()});
      }
      panel.series.push_back(s);
    }
    figure.panels.push_back(panel);
  }
  if (per_epoch_only) figure.title += " (mean loss of each epoch)";
  return figure;
}

// The norm paired differences are taken against: `asked` (which must be a
// row of the grid), else "batch" when the grid has it, else its first norm.
std::string baseline_norm(const ResultGrid& grid, const std::string& asked) {
  const auto has = [&](const std::string& norm) {
    return std::find(grid.norms.begin(), grid.norms.end(), norm) != grid.norms.end();
  };
  if (!asked.empty()) {
    if (!has(asked)) {
      std::string rows;
      for (const std::string& norm : grid.norms) rows += (rows.empty() ? "" : ", ") + norm;
      throw std::invalid_argument("--baseline " + asked +
                                  ": not a norm of the run (its rows: " + rows + ")");
    }
    return asked;
  }
  return has("batch") ? "batch" : grid.norms.front();
}

// The search's runs that did not succeed, per norm and multiplier, over every
// batch size and seed: the selection passes over them, and the table says how
// many it passed over.
std::string search_failures_markdown(const std::vector<json>& search, const json& multipliers,
                                     const std::vector<std::string>& norms) {
  std::string md = "| norm |";
  for (const json& m : multipliers) md += " x" + format_number(m.get<double>()) + " |";
  md += "\n|---|";
  for (std::size_t i = 0; i < multipliers.size(); ++i) md += "---:|";
  md += "\n";
  for (const std::string& norm : norms) {
    md += "| " + norm + " |";
    for (const json& m : multipliers) {
      int runs = 0, diverged = 0, failed = 0;
      for (const json& r : search)
        if (r["norm"] == norm && r.value("lr_multiplier", json()) == m) {
          ++runs;
          const RunOutcome outcome = record_outcome(r);
          diverged += outcome == RunOutcome::diverged;
          failed += outcome == RunOutcome::failed;
        }
      md += " " + std::to_string(diverged) + " diverged, " + std::to_string(failed) +
            " failed (of " + std::to_string(runs) + ") |";
    }
    md += "\n";
  }
  return md;
}

// The learning-rate search: the selected rate per cell, the selected runs'
// validation error, and validation error against the multiplier.
void report_lr_search(const Run& run, const std::string& name, Document& doc,
                      std::vector<Figure>& figures) {
  const json multipliers = run.config["optimizer"].value("lr_multipliers", json::array());
  if (multipliers.empty()) return;
  const std::vector<std::size_t> batch_sizes =
      run.config["batch_sizes"].get<std::vector<std::size_t>>();
  ResultGrid selected = result_grid(batch_sizes, run.records, [](const json& r) {
    return r.value("lr", json()).is_number() ? std::optional<double>(r["lr"].get<double>())
                                             : std::nullopt;
  });
  // Every seed's selected rate, failed and diverged ones included: "0.05 (2), 0.1 (1)".
  std::map<std::pair<std::string, std::size_t>, std::map<double, int>> chosen;
  for (const json& r : run.records)
    if (r.value("lr", json()).is_number())
      ++chosen[{r["norm"].get<std::string>(), r["batch_size"].get<std::size_t>()}]
              [r["lr"].get<double>()];
  doc.table(
      "Learning rate selected on the validation split, per cell: each rate with the number "
      "of seeds that selected it (the grid: the base rule times " +
          multipliers.dump() + "; the run of lowest validation error among those that succeeded)",
      selected.markdown(selected.norms, [&](const std::string& norm, std::size_t b) {
        const auto it = chosen.find({norm, b});
        if (it == chosen.end()) return std::string("-");
        std::string text;
        for (const auto& [lr, count] : it->second)
          text +=
              (text.empty() ? "" : ", ") + format_number(lr) + " (" + std::to_string(count) + ")";
        return text;
      }));
  doc.table(
      "Validation error (%) of the selected runs: mean ± half width of the 95% interval "
      "over the seeds that succeeded (n). " +
          std::string(kFailureRuleText),
      result_grid(batch_sizes, run.records, [](const json& r) {
        return percent(r.value("validation_error", json()));
      }).markdown("%.2f"));
  if (run.search_records.empty()) return;
  std::vector<std::string> norms;
  for (const json& r : run.search_records)
    if (std::find(norms.begin(), norms.end(), r["norm"].get<std::string>()) == norms.end())
      norms.push_back(r["norm"].get<std::string>());
  doc.table(
      "Search runs that diverged or failed, per norm and learning-rate multiplier, over "
      "every batch size and seed (the selection passes over them)",
      search_failures_markdown(run.search_records, multipliers, norms));
  // One panel per batch size: mean validation error over the succeeded seeds
  // at each multiplier, one line per norm.
  Figure figure{name + "_lr_search", "learning-rate search: validation error", {}};
  for (std::size_t b : batch_sizes) {
    Panel panel = make_panel("B=" + std::to_string(b), "log2 of the learning-rate multiplier",
                             "validation error (%)");
    for (std::size_t i = 0; i < norms.size(); ++i) {
      Series series{legend_label(norms[i]), {}, style_for(i)};
      for (const json& m : multipliers) {
        std::vector<double> values;
        for (const json& r : run.search_records)
          if (r["norm"] == norms[i] && r["batch_size"].get<std::size_t>() == b &&
              r.value("lr_multiplier", json()) == m && record_outcome(r) == RunOutcome::succeeded &&
              r.value("validation_error", json()).is_number())
            values.push_back(100 * r["validation_error"].get<double>());
        if (!values.empty())
          series.rows.push_back({std::log2(m.get<double>()), summarize(values).mean});
      }
      if (!series.rows.empty()) panel.series.push_back(series);
    }
    if (!panel.series.empty()) figure.panels.push_back(panel);
  }
  if (figure.panels.empty()) return;
  figures.push_back(figure);
  doc.figure(figures.back().name,
             "Validation error against the learning-rate multiplier (log2 x axis), mean over the "
             "seeds whose run succeeded, one panel per batch size: the search's runs "
             "(search.jsonl).");
}

// What the sweep cost: every trained run's wall time, summed. With a learning-rate
// search the trained runs are the search's (a cell's record is one of them).
std::string training_time(const Run& run) {
  const std::vector<json>& trained = run.search_records.empty() ? run.records : run.search_records;
  double seconds = 0;
  for (const json& r : trained)
    if (const auto it = r.find("wall_seconds"); it != r.end() && it->is_number())
      seconds += it->get<double>();
  char hours[32];
  std::snprintf(hours, sizeof hours, "%.1f", seconds / 3600);
  return std::string("Training time: ") + hours + " h, the wall time of the " +
         std::to_string(trained.size()) +
         (run.search_records.empty() ? " cell runs" : " learning-rate search runs") +
         " summed (runs that went side by side on parallel workers count once each).";
}

void report_run(const Run& run, const std::string& name, const ReportOptions& options,
                Document& doc, std::vector<Figure>& figures) {
  const std::vector<std::size_t> batch_sizes =
      run.config["batch_sizes"].get<std::vector<std::size_t>>();
  ResultGrid errors =
      result_grid(batch_sizes, run.records, [](const json& r) { return percent(r["test_error"]); });
  const std::vector<std::string> skipped = mark_skipped(errors, run.config);
  doc.heading(2, describe_run(run));
  // Grid cells: norms x batch sizes (less the skipped ones) x ranks per cell x seeds.
  const json ranks = run.config.contains("distributed")
                         ? run.config["distributed"].value("ranks_per_cell", json::array({1}))
                         : json::array({1});
  const std::size_t total = (batch_sizes.size() * run.config["norms"].size() - skipped.size()) *
                            ranks.size() * run.config["seeds"].size();
  if (const std::string description = run.config.value("description", std::string());
      !description.empty())
    doc.paragraph(description);
  const std::string budget = run.config.contains("budget")
                                 ? run.config["budget"].items().begin().value().dump() + " " +
                                       run.config["budget"].items().begin().key()
                                 : std::to_string(run.config.value("epochs", 0)) + " epochs";
  doc.paragraph(run.dir.string() + ": " + std::to_string(run.records.size()) + " of " +
                std::to_string(total) + " cells finished; " + budget + " per cell; seeds " +
                run.config["seeds"].dump() + ".");
  if (run.records.empty()) {
    doc.paragraph("No finished cells yet: nothing to plot.");
    return;
  }
  doc.paragraph(training_time(run));
  figures.push_back(error_figure(name + "_test_error", run, errors));
  doc.figure(figures.back().name,
             "Test error (eval mode) vs batch size, one line per norm; log2 x axis.");
  const std::size_t seeds = errors.most_seeds();
  if (seeds >= 2) {
    doc.table(std::string("Test error (%), eval mode: mean ± half width of the 95% confidence "
                          "interval over the n seeds that succeeded (Student's t, n - 1 degrees of "
                          "freedom). ") +
                  kFailureRuleText,
              errors.markdown("%.2f"));
    doc.table("Standard deviation of the test error over seeds (points)",
              errors.stddev_markdown("%.2f"));
    const std::vector<std::string> asked =
        options.baselines.empty() ? std::vector<std::string>{""} : options.baselines;
    for (const std::string& a : asked) {
      const std::string baseline = baseline_norm(errors, a);
      doc.table("Paired difference in test error (points) against " + baseline +
                    ", seed by seed over the seeds that succeeded in both (n): mean ± half width "
                    "of its 95% interval (per comparison) and the paired t test's p-value, "
                    "Holm-adjusted over the table's " +
                    std::to_string(errors.paired_family_size(baseline)) +
                    " comparisons with n >= 2 (a difference is significant at 5% family-wise "
                    "when p < 0.05)",
                errors.paired_markdown(baseline, "%.2f"));
    }
  } else {
    doc.table("Test error (%), eval mode", errors.markdown("%.2f"));
  }
  if (!skipped.empty()) {
    std::string list;
    for (const std::string& s : skipped) list += (list.empty() ? "" : "; ") + s;
    doc.paragraph("Skipped cells: " + list + ".");
  }
  // Test error from another accuracy of the records, for the norms that have it.
  auto other_errors = [&](const char* key, const std::string& title) {
    ResultGrid grid = result_grid(batch_sizes, run.records, [&](const json& r) {
      const json acc = r.value(key, json());
      return acc.is_number() ? std::optional<double>(100.0 * (1.0 - acc.get<double>()))
                             : std::nullopt;
    });
    std::vector<std::string> with_values;
    for (const std::string& norm : grid.norms)
      if (std::any_of(batch_sizes.begin(), batch_sizes.end(),
                      [&](std::size_t b) { return !grid.at(norm, b).values.empty(); }))
        with_values.push_back(norm);
    grid.norms = with_values;
    if (!with_values.empty()) doc.table(title, grid.markdown("%.2f"));
  };
  other_errors("test_accuracy_batch_stats",
               "Test error (%) with batch statistics at the training B instead of running "
               "statistics (norms that have them): the train/test discrepancy");
  other_errors("test_accuracy_precise_bn",
               "Test error (%) with precise BN: running statistics recomputed over up to " +
                   std::to_string(run.config["evaluation"].value("precise_bn_batches", 0)) +
                   " training batches (one pass at most) at the training B (norms that have them)");
  report_lr_search(run, name, doc, figures);
  figures.push_back(loss_figure(name + "_train_loss", run, errors));
  doc.figure(figures.back().name, "Training loss per norm at the smallest and largest batch size.");
  doc.table("Train loss of the last epoch",
            result_grid(batch_sizes, run.records, [](const json& r) -> std::optional<double> {
              if (r["train_loss"].empty()) return std::nullopt;
              return r["train_loss"].back().get<double>();
            }).markdown("%.4f"));
}

std::string describe_probe(const Probe& probe) {
  const json& first = probe.records.front();
  if (first.value("source", "") == "trained") {
    std::string text = "trained model: cell " + first["trained_cell"].get<std::string>() + " of " +
                       first.value("run", std::string("?"));
    if (first["retrained_test_error"].is_number()) {
      char error[64];
      // "weights": "saved" when the probe loaded the cell's saved model
      const bool saved = first.value("weights", std::string()) == "saved";
      std::snprintf(error, sizeof error, ", %s test error %.2f%%",
                    saved ? "saved model's" : "re-trained",
                    100 * first["retrained_test_error"].get<double>());
      text += error;
    }
    return text;
  }
  return "freshly initialized model (seed " + first["seed"].dump() + ")";
}

// For figure titles: "fresh mlp2 (seed 0)", "mlp2 trained as batch/B2/seed0 (test error 50.22%)".
std::string short_source(const json& record) {
  const std::string model = record.value("model", std::string("model"));
  if (record.value("source", "") != "trained")
    return "fresh " + model + " (seed " + record["seed"].dump() + ")";
  std::string text = model + " trained as " + record["trained_cell"].get<std::string>();
  if (record["retrained_test_error"].is_number()) {
    char error[48];
    std::snprintf(error, sizeof error, " (test error %.2f%%)",
                  100 * record["retrained_test_error"].get<double>());
    text += error;
  }
  return text;
}

// Series per (norm, layer) of the probe: "batch · layer 1".
std::vector<std::pair<std::string, std::vector<const json*>>> probe_series(const Probe& probe) {
  std::vector<std::pair<std::string, std::vector<const json*>>> series;
  for (const json& r : probe.records) {
    const std::string key =
        legend_label(r["norm"].get<std::string>()) + " · layer " + r["layer"].dump();
    auto it =
        std::find_if(series.begin(), series.end(), [&](const auto& s) { return s.first == key; });
    if (it == series.end()) it = series.insert(series.end(), {key, {}});
    it->second.push_back(&r);
  }
  for (auto& s : series)
    std::sort(s.second.begin(), s.second.end(), [](const json* a, const json* b) {
      return (*a)["batch_size"].get<std::size_t>() < (*b)["batch_size"].get<std::size_t>();
    });
  return series;
}

// The dashed c/√B reference of a batch-statistics panel, anchored to the data:
// c is the geometric mean over series of `ratio_key` (error × √n) at each
// series' largest B. Statistics over B × H × W values (cnn3) sit well below
// 1/√B, so a line at absolute height 1/√B would be far from them.
std::string law_line(const std::vector<std::pair<std::string, std::vector<const json*>>>& series,
                     const char* ratio_key) {
  double log_sum = 0;
  int count = 0;
  for (const auto& s : series) {
    const json& last = *s.second.back();  // sorted by B
    if (last[ratio_key].is_number() && last[ratio_key].get<double>() > 0) {
      log_sum += std::log(last[ratio_key].get<double>());
      ++count;
    }
  }
  const double c = count ? std::exp(log_sum / count) : 1.0;
  char title[64];
  std::snprintf(title, sizeof title, "∝ 1/√B (%.2f/√B)", c);
  return format_number(c) + "/sqrt(x) with lines dt 2 lw 1.5 lc rgb 'black' title " +
         gnuplot_string(title);
}

void report_probe(const Probe& probe, const std::string& name, Document& doc,
                  std::vector<Figure>& figures) {
  doc.heading(2, "Batch statistics probe: " + probe.dir.filename().string());
  if (probe.records.empty()) {
    doc.paragraph(probe.dir.string() + ": no records.");
    return;
  }
  const json& first = probe.records.front();
  doc.paragraph(probe.dir.string() + ": " + first.value("model", std::string("?")) + ", " +
                describe_probe(probe) + "; " + first["batches"].dump() +
                " sampled batches per batch size; population statistics over the " +
                first["population_size"].dump() + " training samples.");
  std::vector<std::size_t> ticks;
  for (const json& r : probe.records) ticks.push_back(r["batch_size"].get<std::size_t>());
  ticks = sorted_unique(ticks);
  const auto series = probe_series(probe);

  Panel mean = make_panel("batch mean: RMS over channels of |μ_B − μ| / σ",
                          "batch size B (log2 scale)", "relative error (log scale)", ticks, true);
  Panel var = make_panel("batch variance: RMS over channels of |σ²_B − σ²| / σ²",
                         "batch size B (log2 scale)", "relative error (log scale)", ticks, true);
  mean.extra.push_back(law_line(series, "mean_error_ratio"));
  var.extra.push_back(law_line(series, "var_error_ratio"));
  bool running = false;
  for (const json& r : probe.records) running = running || r["gap_running"].is_number();
  Panel gap = make_panel("‖y_train − y_eval‖ / ‖y_eval‖ per layer" +
                             std::string(running ? "" : ", eval with the population statistics"),
                         "batch size B (log2 scale)", "relative L2 gap (log scale)", ticks, true);
  for (std::size_t i = 0; i < series.size(); ++i) {
    Series m{series[i].first, {}, style_for(i, "yerrorlines")}, v = m;
    Series g{series[i].first + (running ? ", eval: population stats" : ""), {}, style_for(i)};
    Series gr{series[i].first + ", eval: running stats", {}, style_for(i, "linespoints", 2)};
    for (const json* r : series[i].second) {
      const double b = (*r)["batch_size"].get<double>();
      const auto add = [&](Series& s, const char* key, const char* spread) {
        if (!(*r)[key].is_number()) return;
        std::vector<double> row = {b, (*r)[key].get<double>()};
        if (spread) row.push_back((*r)[spread].is_number() ? (*r)[spread].get<double>() : 0.0);
        s.rows.push_back(row);
      };
      add(m, "mean_error", "mean_error_std");
      add(v, "var_error", "var_error_std");
      add(g, "gap_population", nullptr);
      add(gr, "gap_running", nullptr);
    }
    mean.series.push_back(m);
    var.series.push_back(v);
    gap.series.push_back(g);
    gap.series.push_back(gr);
  }
  figures.push_back({name + "_batch_stats",
                     "batch statistics vs population statistics: " + short_source(first),
                     {mean, var}});
  doc.figure(figures.back().name,
             "Error of the batch mean and variance against the population's, mean over batches "
             "with ± one standard deviation as bars (Ghost BN: over its virtual batches, the "
             "statistics it normalizes with), next to a c/√B line through the points at the "
             "largest B (dashed). The sampling law over n independent values gives c = 1 for the "
             "mean and c = √2 for the variance of Gaussian activations.");
  figures.push_back(
      {name + "_gap", "train-mode vs eval-mode output: " + short_source(first), {gap}});
  doc.figure(figures.back().name,
             std::string("Relative L2 gap between the layer's train-mode output (batch statistics) "
                         "and its eval-mode output with the population statistics") +
                 (running ? " (solid) and with the model's running statistics (dashed)." : "."));
  doc.table(
      "Per layer and batch size (n: the samples each batch statistic is taken over, B or Ghost "
      "BN's virtual batch size; errors are RMS over channels, in units of the population "
      "sigma for the mean and of the population variance for the variance; ratio = error × "
      "√n, 1 when the 1/√n law holds exactly)",
      probe_table(probe.records));
}

const char* const kStyle =
    "body{font-family:sans-serif;max-width:1350px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:"
    "3px 8px}th{background:#f0f0f0}td.num,th.num{text-align:right;font-variant-numeric:"
    "tabular-nums;white-space:nowrap}figure{margin:1em 0}figure svg{max-width:100%;height:auto;"
    "border:1px solid #ddd}nav ol{columns:2}"
    ".caption{font-weight:bold;margin-bottom:0}.warning{background:#fff3cd;padding:0.7em;"
    "border:1px solid #e0c36a}";

// `html` with each figure's placeholder replaced by its drawn SVG (from
// `dir`), so that report.html shows every figure without its side files. The
// XML prolog and DOCTYPE go (not allowed inside HTML); the style scales the
// figure to the page by its viewBox.
std::string inline_figures(std::string html, const fs::path& dir,
                           const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    const std::string placeholder = figure_placeholder(name);
    const std::size_t at = html.find(placeholder);
    if (at == std::string::npos) continue;
    const fs::path path = dir / (name + ".svg");
    std::ifstream in(path, std::ios::binary);
    std::string svg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::size_t start = svg.find("<svg");
    if (!in || start == std::string::npos)
      throw std::runtime_error(path.string() + ": gnuplot wrote no SVG to inline");
    svg.erase(0, start);
    html.replace(at, placeholder.size(), svg);
  }
  return html;
}

}  // namespace

ReportSummary write_report(const std::vector<std::string>& dirs, const ReportOptions& options) {
  if (dirs.empty()) throw std::invalid_argument("no folders to report on");
  std::vector<Run> runs;
  std::vector<Probe> probes;
  for (const std::string& dir : dirs) collect(dir, runs, probes);

  std::string gnuplot;
  if (!options.gnuplot.empty()) {
    gnuplot = find_program(options.gnuplot);
    if (gnuplot.empty())
      throw std::runtime_error("--gnuplot " + options.gnuplot + ": not an executable program");
  } else {
    gnuplot = find_program("gnuplot");
  }

  // Everything is made in a staging folder inside the output folder and moved
  // into it only when all figures were drawn: a failure leaves it as it was.
  StagedOutput staged(options.out_dir);
  const fs::path out = staged.staging_dir(), shown = options.out_dir;
  Document doc;
  doc.images = !gnuplot.empty();
  std::vector<Figure> figures;
  std::set<std::string> names;
  const auto unique_name = [&](const std::string& wanted) {
    std::string name = slug(wanted);
    for (int k = 2; names.count(name); ++k) name = slug(wanted) + "_" + std::to_string(k);
    names.insert(name);
    return name;
  };
  doc.heading(1, "normlab report");
  if (gnuplot.empty()) {
    doc.markdown += "> " + std::string(kInstallHint) + "\n\n";
    doc.html += "<p class=\"warning\">" + html_escape(kInstallHint) + "</p>\n";
  }
  for (const Run& run : runs)
    report_run(run, unique_name(run.config.value("name", std::string("run"))), options, doc,
               figures);
  for (const Probe& probe : probes) report_probe(probe, unique_name(probe.name), doc, figures);
  // The contents list goes under the title.
  const auto [contents_md, contents_html] = doc.contents();
  doc.markdown.insert(doc.markdown.find("\n\n") + 2, contents_md);
  doc.html.insert(doc.html.find("</h1>\n") + 6, contents_html);

  ReportSummary summary;
  std::vector<std::string> drawn;  // figure names
  staged.run([&] {
    for (const Figure& figure : figures) {
      const std::string script = write_figure(out, figure);
      if (gnuplot.empty()) continue;
      const fs::path log = out / (figure.name + ".log");
      const int status = run_in(gnuplot, script, out, log);
      std::ifstream in(log);
      const std::string messages((std::istreambuf_iterator<char>(in)),
                                 std::istreambuf_iterator<char>());
      if (status != 0 || !fs::exists(out / (figure.name + ".png")))
        throw std::runtime_error((out / script).string() + ": gnuplot failed (exit " +
                                 std::to_string(status) + "): " + messages.substr(0, 400));
      // gnuplot's exit status is not enough: a file-size limit or a full disk
      // cuts an image short and it still exits 0.
      for (const char* format : {"png", "svg"})
        check_figure_file(out / (figure.name + "." + format), messages);
      std::error_code ec;
      fs::remove(log, ec);
      summary.figures.push_back((shown / (figure.name + ".png")).string());
      drawn.push_back(figure.name);
    }
    summary.plotted = !gnuplot.empty();
    write_file(out / "report.md", doc.markdown);
    write_file(out / "report.html",
               "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>normlab report</title>"
               "<style>" +
                   std::string(kStyle) + "</style></head><body>\n" +
                   (gnuplot.empty() ? doc.html : inline_figures(doc.html, out, drawn)) +
                   "</body></html>\n");
  });
  staged.commit();
  summary.html = (shown / "report.html").string();
  return summary;
}

}  // namespace normlab
