// ostrov — command line for training, evaluating and running ostrov's models.
// Exit codes: 0 ok, 1 data or runtime error, 2 usage or config error; errors go to stderr.

#include <csignal>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>

#include "commands.h"
#include "ostrov/core/error.h"
#include "ostrov/core/runtime.h"
#include "ostrov/version.h"

int main(int argc, char** argv) {
  using namespace ostrov::cli;
  // A write to a closed socket (a dead training rank's Gloo connection) must fail with EPIPE
  // and become an error with exit code 1, not kill this process with SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"ostrov: computer-vision models on LibTorch"};
  app.set_version_flag("--version", ostrov::kVersion);
  app.require_subcommand(1);
  std::vector<Command> commands = {add_train(app, argc, argv), add_eval(app),
                                   add_predict(app),          add_export(app),
                                   add_info(app),             add_receptive_field(app),
                                   add_make_scenes(app),      add_stylize(app),
                                   add_config(app)};
  // A first word that is no option and no command gets named, rather than CLI11's generic
  // "A subcommand is required".
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    std::string names;
    for (const auto* sub : app.get_subcommands({})) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::cerr << "ostrov: unknown command '" << argv[1] << "' (commands: " << names
                << "; see ostrov --help)\n";
      return kExitUsage;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every other parse error is a usage error (2).
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  try {
    ostrov::core::set_num_threads();
    ostrov::core::tune_allocator();
    for (auto& command : commands) {
      const int code = command();
      if (code >= 0) return code;
    }
    std::cerr << "ostrov: no command given\n";
    return kExitUsage;
  } catch (const ostrov::ConfigError& e) {
    std::cerr << "ostrov: config error: " << e.what() << "\n";
    return kExitUsage;
  } catch (const c10::Error& e) {
    std::cerr << "ostrov: error: " << e.what_without_backtrace() << "\n";
    return kExitRuntime;
  } catch (const std::exception& e) {
    std::cerr << "ostrov: error: " << e.what() << "\n";
    return kExitRuntime;
  }
}
