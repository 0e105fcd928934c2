#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include "fuzz_target.h"
#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/data/coco_dataset.h"
#include "ostrov/data/transforms.h"
#include "ostrov/io/json.h"
#include "ostrov/io/state_dict.h"
#include "ostrov/ops/instance.h"

namespace ostrov::fuzz {

namespace {

// Little-endian reader over the input; reads past the end give zeros.
struct Bytes {
  const uint8_t* data;
  size_t size;
  size_t at = 0;
  uint8_t u8() { return at < size ? data[at++] : 0; }
  double real() {
    double v = 0;
    uint8_t raw[8] = {};
    for (auto& b : raw) b = u8();
    std::memcpy(&v, raw, sizeof v);
    return v;
  }
  std::string rest() {
    std::string s(reinterpret_cast<const char*>(data) + std::min(at, size), size - std::min(at, size));
    at = size;
    return s;
  }
};

std::string scratch_dir() {
  static const std::string dir = [] {
    const auto d = std::filesystem::temp_directory_path() /
                   ("ostrov-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d / "images");
    return d.string();
  }();
  return dir;
}

}  // namespace

std::string scratch_file(const std::string& tag, const std::string& extension, const uint8_t* data,
                         size_t size) {
  const std::string path = scratch_dir() + "/" + tag + extension;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

// COCO instances JSON: parse and validate every image, category and annotation (boxes,
// polygons, both RLEs), with and without skip_invalid.
void coco_json(const uint8_t* data, size_t size) {
  const std::string path = scratch_file("instances", ".json", data, size);
  for (const bool skip : {false, true}) {
    try {
      data::CocoDataset coco(path, scratch_dir() + "/images", data::CocoOptions().skip_invalid(skip));
      (void)coco.num_classes();
      (void)coco.num_annotations();
    } catch (const Error&) {
    }
  }
}

// Compressed RLE strings and uncompressed counts: decode, area, re-encode round trip.
void rle(const uint8_t* data, size_t size) {
  Bytes in{data, size};
  const int64_t h = in.u8() % 48, w = in.u8() % 48;
  const bool compressed = in.u8() & 1;
  ops::Rle r;
  if (compressed) {
    r = ops::rle_from_string(in.rest(), h, w);
  } else {
    r.height = h;
    r.width = w;
    while (in.at < in.size) r.counts.push_back(in.u8() | (uint32_t{in.u8()} << 8));
  }
  const auto mask = ops::rle_decode(r);  // DataError when the counts do not sum to h*w
  TORCH_INTERNAL_ASSERT(mask.sum().item<int64_t>() == ops::rle_area(r), "rle area mismatch");
  const auto again = ops::rle_encode(mask);
  TORCH_INTERNAL_ASSERT(at::equal(ops::rle_decode(again), mask), "rle round trip");
  TORCH_INTERNAL_ASSERT(ops::rle_from_string(ops::rle_to_string(again), h, w).counts == again.counts,
                        "rle string round trip");
}

// Polygons with arbitrary (also non-finite and huge) coordinates on small canvases.
void polygon(const uint8_t* data, size_t size) {
  Bytes in{data, size};
  const int64_t h = 1 + in.u8() % 64, w = 1 + in.u8() % 64;
  const int count = 1 + in.u8() % 3;
  std::vector<std::vector<double>> polygons(count);
  for (auto& p : polygons) {
    const int n = in.u8() % 16;
    for (int i = 0; i < n; ++i) {
      // Mostly coordinates near the canvas, sometimes raw doubles (NaN, inf, 1e300).
      const uint8_t kind = in.u8();
      p.push_back(kind < 200 ? static_cast<double>(static_cast<int8_t>(in.u8())) + in.u8() / 256.0
                             : in.real());
    }
  }
  const auto mask = ops::polygons_to_mask(polygons, h, w);
  TORCH_INTERNAL_ASSERT(mask.dim() == 2 && mask.size(0) == h && mask.size(1) == w, "mask shape");
}

// Config text: JSON parsing (with ostrov's error positions), the transform builder and
// `--set` overrides.
void config(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::string path = scratch_file("config", ".json", data, size);
  nlohmann::json j;
  try {
    j = io::read_json(path);
  } catch (const Error&) {
    j = nlohmann::json::object();
  }
  (void)data::build_transforms(j.is_array() ? j : (j.is_object() && j.contains("transforms")
                                                       ? j["transforms"]
                                                       : nlohmann::json()),
                               path, "data.transforms");
  nlohmann::json target = nlohmann::json::object();
  io::apply_override(target, text.substr(0, text.find('\n')));
}

// torch.save files: ostrov's zip + pickle reader.
void state_dict(const uint8_t* data, size_t size) {
  const auto state = io::load_state_dict(scratch_file("weights", ".pth", data, size));
  for (const auto& item : state) (void)item.value().sum();
}

// Encoded images (PNG, JPEG, anything OpenCV sniffs) to tensors.
void image(const uint8_t* data, size_t size) {
  const auto bgr = core::read_image(scratch_file("image", ".png", data, size));
  const auto t = core::image_to_tensor(bgr);
  TORCH_INTERNAL_ASSERT(t.dim() == 3 && t.size(0) == 3, "image tensor shape");
}

const std::vector<NamedTarget>& targets() {
  static const std::vector<NamedTarget> all = {{"coco_json", coco_json}, {"rle", rle},
                                               {"polygon", polygon},     {"config", config},
                                               {"state_dict", state_dict}, {"image", image}};
  return all;
}

void run_guarded(Target target, const uint8_t* data, size_t size) {
  try {
    target(data, size);
  } catch (const Error&) {
  } catch (const c10::Error& e) {
    // TORCH_INTERNAL_ASSERT marks a broken invariant of the target itself: a finding.
    if (std::string(e.what()).find("INTERNAL ASSERT") != std::string::npos) throw;
  }
}

}  // namespace ostrov::fuzz
