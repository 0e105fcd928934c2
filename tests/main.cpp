#define CATCH_CONFIG_RUNNER
#include "catch.h"

#include <cstdint>
#include <cstdlib>
#include <string>

#include "ostrov/core/runtime.h"

namespace {

// LibTorch seeds its default generator from the OS at start-up, so a test that builds a
// network with random weights would see different weights in every run: a test that passed
// here could fail in CI. Every test case starts from the same seed instead, whatever ran
// before it in the process; OSTROV_TEST_SEED=<n> repeats the suite under another seed.
uint64_t test_seed() {
  const char* text = std::getenv("OSTROV_TEST_SEED");
  return text != nullptr && *text != '\0' ? std::stoull(text) : 20261205;
}

#if __has_include(<catch2/catch_all.hpp>)
struct SeedEachTestCase : Catch::EventListenerBase {
  using EventListenerBase::EventListenerBase;
  void testCaseStarting(const Catch::TestCaseInfo&) override {
    ostrov::core::seed_everything(test_seed());
  }
};
#else
struct SeedEachTestCase : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testCaseStarting(const Catch::TestCaseInfo&) override {
    ostrov::core::seed_everything(test_seed());
  }
};
#endif

}  // namespace

CATCH_REGISTER_LISTENER(SeedEachTestCase)

int main(int argc, char* argv[]) {
  // CTest runs test cases two at a time on this 2-core machine: one thread each.
  ostrov::core::set_num_threads(1);
  return Catch::Session().run(argc, argv);
}
