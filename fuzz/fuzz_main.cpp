// libFuzzer entry point: one executable per target, chosen at compile time by
// OSTROV_FUZZ_TARGET (e.g. -DOSTROV_FUZZ_TARGET=rle).
#include "fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ostrov::fuzz::run_guarded(&ostrov::fuzz::OSTROV_FUZZ_TARGET, data, size);
  return 0;
}
