#include "catch.h"

#include <malloc.h>

#include <cstdlib>
#include <thread>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/version.h>

#include <spdlog/logger.h>

#include "ostrov/core/device.h"
#include "ostrov/core/error.h"
#include "ostrov/core/random.h"
#include "ostrov/core/runtime.h"

using namespace ostrov;

TEST_CASE("parse_device accepts cpu and rejects bad strings with the string", "[core][device]") {
  CHECK(core::parse_device("cpu").is_cpu());
  CHECK(core::parse_device("cpu:0").is_cpu());
  CHECK(core::parse_device("auto") == (core::cuda_available() ? c10::Device("cuda:0") : c10::Device("cpu")));
  CHECK_THROWS_AS(core::parse_device("gpu"), ConfigError);
  CHECK_THROWS_WITH(core::parse_device("gpu"), Catch::Contains("\"gpu\""));
  CHECK_THROWS_WITH(core::parse_device("cuda:x"), Catch::Contains("cuda:x"));
  if (!core::cuda_available()) {
    CHECK_THROWS_WITH(core::parse_device("cuda"), Catch::Contains("CUDA is not available"));
    CHECK_THROWS_WITH(core::parse_device("cuda:1"), Catch::Contains("cuda:1"));
  } else {
    CHECK(core::parse_device("cuda").is_cuda());
    CHECK_THROWS_WITH(core::parse_device("cuda:99"), Catch::Contains("cuda:99"));
  }
}

TEST_CASE("seed_everything repeats torch and std randomness", "[core][runtime]") {
  core::seed_everything(123);
  auto a = at::rand({8});
  auto ia = core::generator()();
  core::seed_everything(123);
  auto b = at::rand({8});
  auto ib = core::generator()();
  CHECK(at::equal(a, b));
  CHECK(ia == ib);
  core::seed_everything(124);
  CHECK_FALSE(at::equal(at::rand({8}), a));
}

TEST_CASE("set_num_threads defaults to the available cores", "[core][runtime]") {
  const int before = at::get_num_threads();
  CHECK(core::available_cores() >= 1);
  CHECK(core::set_num_threads(0) == core::available_cores());
  CHECK(core::set_num_threads(1) == 1);
  at::set_num_threads(before);
}

TEST_CASE("use_one_thread_here limits only the calling thread", "[core][runtime]") {
  const int before = at::get_num_threads();
  core::set_num_threads(2);
  int helper_before = 0;
  int helper_after = 0;
  at::Tensor sum;
  std::thread helper([&] {
    helper_before = at::get_num_threads();
    core::use_one_thread_here();
    helper_after = at::get_num_threads();
    sum = at::ones({1 << 20}).sum();  // a parallel-sized reduction still runs, on this thread
  });
  helper.join();
  CHECK(helper_before == 2);  // a new thread starts with the process's intra-op threads
  CHECK(helper_after == 1);
  CHECK(sum.item<float>() == static_cast<float>(1 << 20));
  CHECK(at::get_num_threads() == 2);  // the calling thread's team is untouched
  at::set_num_threads(before);
}

TEST_CASE("tune_allocator serves blocks up to 32 MiB from the heap, not from mmap", "[core][runtime]") {
#if defined(__SANITIZE_ADDRESS__)
  // ASan's allocator replaces glibc's malloc and refuses mallopt: nothing to tune.
  CHECK_FALSE(core::tune_allocator());
#else
  REQUIRE(core::tune_allocator());
  const auto mapped = [] { return mallinfo2().hblkhd; };  // bytes in mmap()ed blocks
  const size_t before = mapped();
  void* heap_block = std::malloc(24u << 20);
  REQUIRE(heap_block != nullptr);
  CHECK(mapped() == before);  // glibc's default threshold (128 KiB) would mmap it
  void* big_block = std::malloc(40u << 20);
  REQUIRE(big_block != nullptr);
  CHECK(mapped() >= before + (40u << 20));  // above the 32 MiB cap: still its own mapping
  std::free(big_block);
  std::free(heap_block);
#endif
}

TEST_CASE("runtime_info reports versions and the BLAS in use", "[core][runtime]") {
  auto info = core::runtime_info();
  // The LibTorch this was built against (1.13 on Debian 12, 2.6 on Debian 13), from its
  // numeric version macros rather than the string runtime_info reads.
  const std::string built = std::to_string(TORCH_VERSION_MAJOR) + "." +
                            std::to_string(TORCH_VERSION_MINOR) + "." +
                            std::to_string(TORCH_VERSION_PATCH);
  CHECK(info.torch_version.rfind(built, 0) == 0);
  CHECK(info.opencv_version.rfind("4.", 0) == 0);
  CHECK_FALSE(info.blas.empty());
  CHECK(core::logger()->name() == "ostrov");
}
