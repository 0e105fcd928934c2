#include "ostrov/nn/fusion.h"

#include <algorithm>

#include <torch/nn/functional/padding.h>
#include <torch/nn/options/padding.h>

namespace ostrov::nn {

namespace F = torch::nn::functional;

namespace {

void check_spatial(const char* who, const torch::Tensor& x, int64_t h, int64_t w) {
  TORCH_CHECK(x.defined(), who, ": the input tensor is undefined");
  TORCH_CHECK(x.dim() >= 2, who, ": input should be [..., H, W], got ", x.sizes());
  TORCH_CHECK(h > 0 && w > 0, who, ": target size must be positive, got ", h, "x", w);
}

void check_fusable(const char* who, const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.defined() && b.defined(), who, ": an input tensor is undefined");
  TORCH_CHECK(a.dim() == 4 && b.dim() == 4, who, ": inputs should be [N,C,H,W], got a ",
              a.sizes(), " and b ", b.sizes());
  TORCH_CHECK(a.size(0) == b.size(0), who, ": batch sizes differ, a ", a.sizes(), " and b ",
              b.sizes());
}

}  // namespace

torch::Tensor center_crop(const torch::Tensor& x, int64_t h, int64_t w) {
  check_spatial("center_crop", x, h, w);
  const int64_t height = x.size(-2);
  const int64_t width = x.size(-1);
  TORCH_CHECK(h <= height && w <= width, "center_crop: cannot crop ", x.sizes(), " to ", h,
              "x", w, " (the crop must not be larger than the input)");
  if (h == height && w == width) {
    return x;
  }
  return x.narrow(-2, (height - h) / 2, h).narrow(-1, (width - w) / 2, w);
}

torch::Tensor pad_to(const torch::Tensor& x, int64_t h, int64_t w) {
  check_spatial("pad_to", x, h, w);
  const int64_t height = x.size(-2);
  const int64_t width = x.size(-1);
  TORCH_CHECK(h >= height && w >= width, "pad_to: cannot pad ", x.sizes(), " to ", h, "x", w,
              " (the target must not be smaller than the input)");
  if (h == height && w == width) {
    return x;
  }
  const int64_t top = (h - height) / 2;
  const int64_t left = (w - width) / 2;
  // (left, right, top, bottom) for the last two dimensions.
  return F::pad(x, F::PadFuncOptions({left, w - width - left, top, h - height - top})
                       .mode(torch::kConstant));
}

torch::Tensor crop_or_pad(const torch::Tensor& x, int64_t h, int64_t w) {
  check_spatial("crop_or_pad", x, h, w);
  const int64_t height = x.size(-2);
  const int64_t width = x.size(-1);
  torch::Tensor y = center_crop(x, std::min(h, height), std::min(w, width));
  return pad_to(y, h, w);
}

torch::Tensor fuse_sum(const torch::Tensor& a, const torch::Tensor& b) {
  check_fusable("fuse_sum", a, b);
  TORCH_CHECK(a.size(1) == b.size(1), "fuse_sum: channel counts differ, a ", a.sizes(),
              " and b ", b.sizes());
  return a + crop_or_pad(b, a.size(2), a.size(3));
}

torch::Tensor fuse_concat(const torch::Tensor& a, const torch::Tensor& b) {
  check_fusable("fuse_concat", a, b);
  return torch::cat({a, crop_or_pad(b, a.size(2), a.size(3))}, 1);
}

}  // namespace ostrov::nn
