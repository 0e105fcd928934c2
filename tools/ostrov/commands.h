#pragma once
// Subcommands of the ostrov CLI. Each registers itself on the app and returns the function
// that runs it; the function returns the process exit code.

#include <functional>

namespace CLI {
class App;
}

namespace ostrov::cli {

/// Exit codes (docs/architecture.md "The command line"): 0 ok, 1 data or runtime error, 2 usage or config error.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;
inline constexpr int kExitUsage = 2;

using Command = std::function<int()>;

Command add_info(CLI::App& app);
Command add_receptive_field(CLI::App& app);
Command add_make_scenes(CLI::App& app);
Command add_train(CLI::App& app, int argc, char** argv);
Command add_eval(CLI::App& app);
Command add_predict(CLI::App& app);
Command add_export(CLI::App& app);
Command add_stylize(CLI::App& app);
Command add_config(CLI::App& app);

}  // namespace ostrov::cli
