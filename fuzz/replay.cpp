// Replays every fuzz target over its corpus (fuzz/corpus/<target>/: seeds and every input a
// fuzzer ever crashed on), plus truncations and bit flips of each file, so CI keeps the
// findings fixed without clang. Built with the normal compiler; see fuzz_target.h.
#define CATCH_CONFIG_MAIN
#include "catch.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_target.h"

namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The file itself, 8 truncations and 16 single-bit flips spread over it.
std::vector<std::vector<uint8_t>> variants(const std::vector<uint8_t>& bytes) {
  std::vector<std::vector<uint8_t>> out{bytes};
  for (size_t k = 0; k < 8 && !bytes.empty(); ++k) {
    out.emplace_back(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(bytes.size() * k / 8));
  }
  for (size_t k = 0; k < 16 && !bytes.empty(); ++k) {
    auto flipped = bytes;
    flipped[(bytes.size() * k) / 16] ^= static_cast<uint8_t>(1u << (k % 8));
    out.push_back(std::move(flipped));
  }
  return out;
}

}  // namespace

TEST_CASE("fuzz corpus replays without an unexpected exception or crash", "[fuzz]") {
  for (const auto& target : ostrov::fuzz::targets()) {
    const fs::path dir = fs::path(OSTROV_FUZZ_CORPUS) / target.name;
    REQUIRE(fs::is_directory(dir));
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    CHECK(files.size() >= 2);
    for (const auto& file : files) {
      const auto bytes = read_bytes(file);
      int index = 0;
      for (const auto& v : variants(bytes)) {
        INFO(target.name << ": " << file.filename().string() << " variant " << index++);
        CHECK_NOTHROW(ostrov::fuzz::run_guarded(target.run, v.data(), v.size()));
      }
    }
  }
}
