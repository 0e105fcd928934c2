#define CATCH_CONFIG_RUNNER
#include "catch.h"

#include "ostrov/core/runtime.h"

int main(int argc, char* argv[]) {
  // CTest runs test cases two at a time on this 2-core machine: one thread each.
  ostrov::core::set_num_threads(1);
  return Catch::Session().run(argc, argv);
}
