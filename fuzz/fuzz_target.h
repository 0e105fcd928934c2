#pragma once
// The fuzz targets of ostrov (issue 12). Each target is a plain function over a byte string:
//  - built with clang's libFuzzer (`make fuzz`, preset "fuzz"), fuzz_main.cpp wraps one target
//    as LLVMFuzzerTestOneInput;
//  - built with the normal compiler, ostrov_fuzz_replay runs every target over its corpus in
//    fuzz/corpus/<name>/ (seed inputs and every crash input found so far) as a CTest test.
// A target may see ostrov::Error and c10::Error (bad input, reported with a message): those are
// the documented outcomes. Anything else escaping — std::out_of_range, a raw nlohmann
// exception, a segfault, a sanitizer report — is a bug the fuzzer reports.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ostrov::fuzz {

using Target = void (*)(const uint8_t* data, size_t size);

struct NamedTarget {
  const char* name;
  Target run;
};

void coco_json(const uint8_t* data, size_t size);
void rle(const uint8_t* data, size_t size);
void polygon(const uint8_t* data, size_t size);
void config(const uint8_t* data, size_t size);
void state_dict(const uint8_t* data, size_t size);
void image(const uint8_t* data, size_t size);

/// All targets, by name (the corpus folder names).
const std::vector<NamedTarget>& targets();

/// Runs `target` and swallows ostrov::Error and c10::Error; anything else propagates.
void run_guarded(Target target, const uint8_t* data, size_t size);

/// Writes `size` bytes to a per-process scratch file named after `tag` (+ `extension`) and
/// returns its path; the file APIs under test (CocoDataset, load_state_dict, read_image) read it.
std::string scratch_file(const std::string& tag, const std::string& extension, const uint8_t* data,
                         size_t size);

}  // namespace ostrov::fuzz
