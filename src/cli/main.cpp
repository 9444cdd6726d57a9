// normlab: the command-line tool. `normlab COMMAND --help` for each command.
#include <csignal>
#include <exception>
#include <iostream>
#include <string>

#include <boost/program_options/errors.hpp>

#include "commands.hpp"
#include "normlab/distributed.hpp"
#include "normlab/process.hpp"
#include "normlab/version.hpp"
#include "parse_options.hpp"

namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const normlab::cli::Args&);
};

const Command kCommands[] = {
    {"run", "train the grid of a JSON config (norm x batch size x seed) and record results",
     normlab::cli::run_command},
    {"validate", "check a config and print it with defaults filled in",
     normlab::cli::validate_command},
    {"list", "the norms, models and datasets a config can name", normlab::cli::list_command},
    {"probe", "batch statistics vs population statistics per layer and batch size",
     normlab::cli::probe_command},
    {"report", "figures (gnuplot) and tables from runs and probes", normlab::cli::report_command},
    {"apply", "run one norm forward/backward on .npy files (conformance with other frameworks)",
     normlab::cli::apply_command},
    {"demo", "apply every norm to a sample input and compare what each normalizes",
     normlab::cli::demo_command},
    {"bench", "time every norm's forward/backward against the machine's memory bandwidth",
     normlab::cli::bench_command},
};

// An error message as one line of bounded length: line breaks (a quoted
// value can hold them) become spaces, other control characters '?'.
std::string one_line(const std::string& message) {
  constexpr std::size_t kMaxLength = 2000;
  std::string line;
  for (char c : message.substr(0, kMaxLength)) {
    if (c == '\n' || c == '\r' || c == '\t')
      line += ' ';
    else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      line += '?';
    else
      line += c;
  }
  if (message.size() > kMaxLength) line += "...";
  return line;
}

void print_usage(std::ostream& out) {
  out << "normlab " << normlab::version << " - normalization layers on one reduction engine\n\n"
      << "usage: normlab COMMAND [options]\n"
      << "       normlab help COMMAND   (or normlab COMMAND --help: that command's options)\n\n"
      << "Commands:\n";
  for (const Command& c : kCommands)
    out << "  " << c.name << std::string(10 - std::string(c.name).size(), ' ') << c.summary << "\n";
  out << "\nExit status: 0 on success, 1 when a command fails (bad config or file), 2 for a\n"
      << "usage error (unknown command or option, bad option value), 130 when interrupted.\n";
}

const Command* find_command(const std::string& name) {
  for (const Command& c : kCommands)
    if (name == c.name) return &c;
  return nullptr;
}

int unknown_command(const std::string& name) {
  std::cerr << "normlab: unknown command '" << one_line(name) << "' (see normlab --help)\n";
  return 2;
}

// The general usage and then every command's help, for help2man (the man page).
void print_all_help() {
  print_usage(std::cout);
  for (const Command& c : kCommands) {
    std::cout << "\n";
    c.run({"--help"});
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Past a file size limit (ulimit -f) a write fails with EFBIG, which is
  // reported naming the file, instead of the process dying of SIGXFSZ.
  std::signal(SIGXFSZ, SIG_IGN);
  if (argc < 2) {
    print_usage(std::cerr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || (name == "help" && argc == 2)) {
    print_usage(std::cout);
    return 0;
  }
  if (name == "help") {  // normlab help COMMAND
    if (argc > 3) {
      std::cerr << "normlab help: expected one COMMAND (see normlab --help)\n";
      return 2;
    }
    const Command* command = find_command(argv[2]);
    return command ? command->run({"--help"}) : unknown_command(argv[2]);
  }
  if (name == "--help-all") {
    print_all_help();
    return 0;
  }
  if (name == "--version") {
    std::cout << "normlab " << normlab::version << "\n";
    return 0;
  }
  if (const Command* command = find_command(name)) {
    const Command& c = *command;
    // Under mpirun every rank runs this; `run` spreads its cells over them.
    struct Mpi {
      bool on = false;
      ~Mpi() {
        if (on) normlab::finalize_mpi();
      }
    } mpi;
    try {
      // Before MPI, threads or any BLAS call: may restart this process with
      // OPENBLAS_CORETYPE and OMP_WAIT_POLICY set (normlab/process.hpp).
      normlab::prepare_process(argv);
      if (normlab::launched_by_mpirun()) {
        normlab::init_mpi(&argc, &argv);
        mpi.on = true;
        if (normlab::world_communicator()->size() > 1 && name != "run")
          throw std::invalid_argument(
              "runs in one process: only `normlab run` spreads over MPI "
              "ranks (run it without mpirun)");
      }
      return c.run(normlab::cli::Args(argv + 2, argv + argc));
    } catch (const normlab::cli::UsageError& e) {
      std::cerr << "normlab " << name << ": " << one_line(e.what()) << " (see normlab help " << name
                << ")\n";
      if (mpi.on) normlab::abort_mpi(2);
      return 2;
    } catch (const boost::program_options::error& e) {
      std::cerr << "normlab " << name << ": " << one_line(e.what()) << " (see normlab help " << name
                << ")\n";
      if (mpi.on) normlab::abort_mpi(2);
      return 2;
    } catch (const std::bad_alloc&) {  // the checks bound what inputs allocate: a last resort
      std::cerr << "normlab " << name
                << ": out of memory (this machine could not allocate what the command needs; "
                   "use a smaller dataset, batch or grid)\n";
      if (mpi.on) normlab::abort_mpi(1);
      return 1;
    } catch (const std::exception& e) {
      std::string message = e.what();
      // A JSON library error that no check caught: its text without the library's tag.
      if (message.rfind("[json.exception.", 0) == 0 && message.find("] ") != std::string::npos)
        message = "unexpected JSON value: " + message.substr(message.find("] ") + 2);
      std::cerr << "normlab " << name << ": " << one_line(message) << "\n";
      if (mpi.on) normlab::abort_mpi(1);  // the other ranks would wait for this one
      return 1;
    } catch (...) {
      std::cerr << "normlab " << name << ": failed with an unknown error\n";
      if (mpi.on) normlab::abort_mpi(1);
      return 1;
    }
  }
  return unknown_command(name);
}
