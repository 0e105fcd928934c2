// `ostrov info`: versions, threads, BLAS, devices and NCCL, as text or JSON.

#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "ostrov/core/runtime.h"
#include "ostrov/train/distributed.h"

namespace ostrov::cli {

Command add_info(CLI::App& app) {
  auto* sub = app.add_subcommand("info", "Print versions, threads, BLAS and devices");
  auto as_json = std::make_shared<bool>(false);
  sub->add_flag("--json", *as_json, "Print one JSON object instead of text");
  return [sub, as_json]() {
    if (!sub->parsed()) return -1;
    const core::RuntimeInfo info = core::runtime_info();
    nlohmann::json j = {{"ostrov", info.ostrov_version},
                        {"torch", info.torch_version},
                        {"opencv", info.opencv_version},
                        {"blas", info.blas},
                        {"intra_op_threads", info.intra_op_threads},
                        {"available_cores", info.available_cores},
                        {"cuda", info.cuda},
                        {"cuda_devices", info.cuda_devices},
                        {"nccl", train::nccl_available()},
                        {"mkldnn", info.mkldnn},
                        {"openmp", info.openmp}};
    if (*as_json) {
      std::cout << j.dump() << std::endl;
    } else {
      for (const auto& item : j.items()) {
        std::cout << item.key() << ": "
                  << (item.value().is_string() ? item.value().get<std::string>()
                                               : item.value().dump())
                  << "\n";
      }
    }
    return kExitOk;
  };
}

}  // namespace ostrov::cli
