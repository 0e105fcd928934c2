#include "ostrov/models/segmentation/padding.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace ostrov::models {

namespace {

/// Pads dimension `dim` (2 or 3) of x by `before`/`after` rows or columns.
at::Tensor pad_dim(at::Tensor x, int64_t dim, int64_t before, int64_t after, InputPadding mode) {
  if (before == 0 && after == 0) {
    return x;
  }
  // at::pad's list is (left, right, top, bottom) for the last two dimensions.
  const auto spec = [dim](int64_t b, int64_t a) {
    return dim == 3 ? std::vector<int64_t>{b, a, 0, 0} : std::vector<int64_t>{0, 0, b, a};
  };
  if (mode == InputPadding::kZero) {
    return at::constant_pad_nd(x, spec(before, after), 0.0);
  }
  if (x.size(dim) == 1) {
    return at::replication_pad2d(x, spec(before, after));
  }
  // Reflect padding must be smaller than the side: mirror repeatedly for larger margins.
  while (before > 0 || after > 0) {
    const int64_t limit = x.size(dim) - 1;
    const int64_t b = std::min(before, limit);
    const int64_t a = std::min(after, limit);
    x = at::reflection_pad2d(x, spec(b, a));
    before -= b;
    after -= a;
  }
  return x;
}

}  // namespace

InputPadding input_padding_from_string(const std::string& name) {
  if (name == "reflect" || name == "mirror") {
    return InputPadding::kReflect;
  }
  if (name == "zero" || name == "zeros" || name == "constant") {
    return InputPadding::kZero;
  }
  TORCH_CHECK(false, "unknown input padding \"", name, "\"; expected \"reflect\" or \"zero\"");
}

std::string to_string(InputPadding mode) {
  return mode == InputPadding::kReflect ? "reflect" : "zero";
}

PaddedInput pad_input(const at::Tensor& x, int64_t top, int64_t bottom, int64_t left,
                      int64_t right, InputPadding mode) {
  TORCH_CHECK(x.defined() && x.dim() == 4, "pad_input expects [N,C,H,W], got ",
              x.defined() ? x.sizes() : at::IntArrayRef{});
  TORCH_CHECK(x.size(2) >= 1 && x.size(3) >= 1, "pad_input needs H, W >= 1, got ", x.sizes());
  TORCH_CHECK(top >= 0 && bottom >= 0 && left >= 0 && right >= 0,
              "pad_input margins must be >= 0, got top=", top, " bottom=", bottom, " left=", left,
              " right=", right);
  PaddedInput out;
  out.top = top;
  out.left = left;
  out.height = x.size(2);
  out.width = x.size(3);
  out.tensor = pad_dim(pad_dim(x, 2, top, bottom, mode), 3, left, right, mode);
  return out;
}

PaddedInput pad_to_multiple(const at::Tensor& x, int64_t multiple, InputPadding mode,
                            int64_t remainder, int64_t min_size) {
  TORCH_CHECK(multiple >= 1, "pad_to_multiple: multiple must be >= 1, got ", multiple);
  TORCH_CHECK(x.defined() && x.dim() == 4, "pad_to_multiple expects [N,C,H,W], got ",
              x.defined() ? x.sizes() : at::IntArrayRef{});
  const auto target = [&](int64_t side) {
    int64_t s = std::max(side, min_size);
    const int64_t r = ((remainder % multiple) + multiple) % multiple;
    s += ((r - s % multiple) % multiple + multiple) % multiple;
    return s;
  };
  const int64_t dh = target(x.size(2)) - x.size(2);
  const int64_t dw = target(x.size(3)) - x.size(3);
  return pad_input(x, dh / 2, dh - dh / 2, dw / 2, dw - dw / 2, mode);
}

at::Tensor crop_to_input(const at::Tensor& y, const PaddedInput& padded) {
  TORCH_CHECK(y.defined() && y.dim() == 4, "crop_to_input expects [N,K,H,W], got ",
              y.defined() ? y.sizes() : at::IntArrayRef{});
  TORCH_CHECK(y.size(2) == padded.tensor.size(2) && y.size(3) == padded.tensor.size(3),
              "crop_to_input: output ", y.sizes(), " does not have the padded input's size ",
              padded.tensor.sizes());
  return y.narrow(2, padded.top, padded.height).narrow(3, padded.left, padded.width);
}

}  // namespace ostrov::models
