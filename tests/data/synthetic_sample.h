#pragma once
// Test helper: synthetic samples whose targets are derived from each other (boxes from the
// instance masks, the class mask = the union of the instances labelled 1..K), and a checker
// that they still agree after transforms.

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "ostrov/data/sample.h"
#include "ostrov/data/transforms.h"

namespace ostrov::test {

/// Tight boxes [K,4] (pixel edges: x2 = last column + 1) of [K,H,W] binary masks.
inline at::Tensor boxes_from_instances(const at::Tensor& instances) {
  std::vector<float> out;
  for (int64_t k = 0; k < instances.size(0); ++k) {
    const auto inst = instances[k].to(at::kBool);
    const auto rows = inst.any(1).nonzero();
    const auto cols = inst.any(0).nonzero();
    out.push_back(cols.min().item<float>());
    out.push_back(rows.min().item<float>());
    out.push_back(cols.max().item<float>() + 1.0f);
    out.push_back(rows.max().item<float>() + 1.0f);
  }
  return at::tensor(out, at::kFloat).view({instances.size(0), 4});
}

/// K (<= 12) non-overlapping filled rectangles on a 3x4 grid of cells, with labels 1..K in
/// random cells, sides from 2 px to the cell size; noisy background, one colour per object.
inline data::Sample rect_sample(uint64_t seed, int64_t H = 48, int64_t W = 64, int64_t K = 4) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> cells(12);
  for (int64_t i = 0; i < 12; ++i) cells[i] = i;
  for (int64_t i = 11; i > 0; --i) std::swap(cells[i], cells[rng() % (i + 1)]);
  auto instances = at::zeros({K, H, W}, at::kByte);
  auto mask = at::zeros({H, W}, at::kLong);
  std::vector<float> pixels(static_cast<size_t>(3 * H * W));
  for (auto& p : pixels) p = static_cast<float>(rng() >> 40) / 16777216.0f * 0.3f;
  auto image = at::tensor(pixels, at::kFloat).view({3, H, W});
  for (int64_t k = 0; k < K; ++k) {
    const int64_t cy = cells[k] / 4, cx = cells[k] % 4;
    const int64_t y0 = cy * H / 3, y1 = (cy + 1) * H / 3, x0 = cx * W / 4, x1 = (cx + 1) * W / 4;
    const int64_t h = 2 + static_cast<int64_t>(rng() % static_cast<uint64_t>(y1 - y0 - 1));
    const int64_t w = 2 + static_cast<int64_t>(rng() % static_cast<uint64_t>(x1 - x0 - 1));
    const int64_t y = y0 + static_cast<int64_t>(rng() % static_cast<uint64_t>(y1 - y0 - h + 1));
    const int64_t x = x0 + static_cast<int64_t>(rng() % static_cast<uint64_t>(x1 - x0 - w + 1));
    instances[k].slice(0, y, y + h).slice(1, x, x + w).fill_(1);
    mask.slice(0, y, y + h).slice(1, x, x + w).fill_(k + 1);
    for (int64_t c = 0; c < 3; ++c) {
      image[c].slice(0, y, y + h).slice(1, x, x + w).fill_(0.4 + 0.2 * ((k + c) % 3));
    }
  }
  data::Sample s;
  s.image = image;
  s.mask = mask;
  s.instances = instances;
  s.boxes = boxes_from_instances(instances);
  s.labels = at::arange(1, K + 1, at::kLong);
  s.iscrowd = at::zeros({K}, at::kByte);
  s.image_id = static_cast<int64_t>(seed);
  s.source = "rect_" + std::to_string(seed) + ".png";
  s.original_height = H;
  s.original_width = W;
  return s;
}

/// "" when the sample's targets agree, otherwise the first problem: every kept box is at least
/// 1x1 px, inside the image, and within `tolerance` px of its instance's pixel extent (which
/// is non-empty); labels/instances/iscrowd have one entry per box; for every kept object the
/// class mask equals its label exactly on its instance; class-mask values are 0, 255, kept
/// labels, or labels of dropped objects (1..original_k).
inline std::string consistency_problem(const data::Sample& s, int64_t original_k,
                                       double tolerance = 1.0) {
  try {
    data::check_sample(s, "consistency");
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  if (!s.boxes.defined() || !s.labels.defined() || !s.instances.defined() || !s.mask.defined() ||
      !s.iscrowd.defined()) {
    return "a target field went missing";
  }
  const int64_t H = s.image.size(1), W = s.image.size(2);
  const int64_t K = s.boxes.size(0);
  if (s.instances.numel() > 0 && s.instances.max().item<int64_t>() > 1) return "instance values other than 0/1";
  std::vector<int64_t> kept;
  for (int64_t k = 0; k < K; ++k) {
    const auto b = s.boxes[k];
    const double x1 = b[0].item<double>(), y1 = b[1].item<double>();
    const double x2 = b[2].item<double>(), y2 = b[3].item<double>();
    const std::string box = "box " + std::to_string(k) + " [" + std::to_string(x1) + "," +
                            std::to_string(y1) + "," + std::to_string(x2) + "," +
                            std::to_string(y2) + "]";
    if (x2 - x1 < 1.0 || y2 - y1 < 1.0) return "degenerate " + box + " kept";
    if (x1 < 0 || y1 < 0 || x2 > W || y2 > H) return box + " outside the image";
    const auto inst = s.instances[k].to(at::kBool);
    if (!inst.any().item<bool>()) return box + " has an empty instance";
    const auto rows = inst.any(1).nonzero();
    const auto cols = inst.any(0).nonzero();
    const double ix1 = cols.min().item<double>(), ix2 = cols.max().item<double>() + 1;
    const double iy1 = rows.min().item<double>(), iy2 = rows.max().item<double>() + 1;
    if (std::abs(x1 - ix1) > tolerance || std::abs(x2 - ix2) > tolerance ||
        std::abs(y1 - iy1) > tolerance || std::abs(y2 - iy2) > tolerance) {
      return box + " does not match its instance's extent [" + std::to_string(ix1) + "," +
             std::to_string(iy1) + "," + std::to_string(ix2) + "," + std::to_string(iy2) + "]";
    }
    const int64_t label = s.labels[k].item<int64_t>();
    if (!at::equal(s.mask == label, inst)) {
      return "class mask != label " + std::to_string(label) + " on instance " + std::to_string(k);
    }
    if (std::find(kept.begin(), kept.end(), label) != kept.end()) return "duplicate label";
    kept.push_back(label);
  }
  const auto values = std::get<0>(at::_unique(s.mask));
  for (int64_t i = 0; i < values.numel(); ++i) {
    const int64_t v = values[i].item<int64_t>();
    if (v == 0 || v == 255 || std::find(kept.begin(), kept.end(), v) != kept.end()) continue;
    if (v < 1 || v > original_k) return "unexpected class-mask value " + std::to_string(v);
  }
  return "";
}

}  // namespace ostrov::test
